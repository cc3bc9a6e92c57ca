//! The zoom pass: finds faces too small for the main pass by running the detector on
//! magnified tiles of the full-resolution frame, every few frames.
//!
//! Why: in compressed video a 12 px face is not found reliably at any scale up to 1x (YuNet
//! scores it 0.11-0.9 at native size, often below the 0.5 threshold), but at 2x it scores
//! 0.85+. Magnifying the whole frame every frame costs about 8x the main pass, so the zoom pass
//! runs every `detect.zoom_every` frames and the tracker (gap filling, look-back, look-ahead)
//! covers the frames between; and a sweep first looks at 1x with a low threshold, magnifying
//! only around what that proposes (the pipeline's detect stage decides; this module lays out
//! the tiles, unstretched: [`layout_in`]).
//!
//! Owns: the tile layout (pure, property-tested), rendering a tile from I420 planes into the
//! detector's NCHW input with bilinear sampling, and the change test between two sweeps (which
//! blocks changed, following a pan or tilt of the whole picture). Must not touch: models (it
//! fills tensors) or GStreamer (it reads plain plane slices).

use rayon::prelude::*;

use super::ChannelOrder;
use crate::geom::{Rect, ceil_to_multiple};

/// One tile: the source rectangle (frame pixels) and the detector input size it is rendered at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tile {
    pub x0: u32,
    pub y0: u32,
    pub w: u32,
    pub h: u32,
    /// Rendered size (multiples of 32).
    pub in_w: u32,
    pub in_h: u32,
}

impl Tile {
    /// Scale from tile input pixels back to frame pixels, per axis.
    pub fn back_scale(&self) -> (f32, f32) {
        (
            self.w as f32 / self.in_w as f32,
            self.h as f32 / self.in_h as f32,
        )
    }
}

/// Largest rendered tile (pixels on each axis) before the frame is split into more tiles.
pub const MAX_TILE_W: u32 = 1280;
pub const MAX_TILE_H: u32 = 768;
/// Overlap between neighbouring tiles in frame pixels: a small face cut by one tile's edge
/// lies whole inside its neighbour.
pub const OVERLAP: u32 = 32;

/// Tiles covering a `width x height` frame at magnification `zoom`. Every frame pixel lies in
/// at least one tile; neighbouring tiles overlap by at least [`OVERLAP`] pixels.
pub fn layout(width: u32, height: u32, zoom: f32) -> Vec<Tile> {
    layout_in(
        Rect {
            x0: 0,
            y0: 0,
            x1: width as usize,
            y1: height as usize,
        },
        zoom,
        (width, height),
    )
}

/// Tiles covering the rectangle `r` of a `frame_w x frame_h` frame at magnification `zoom`, as
/// [`layout`] covers a whole frame. Each tile is rendered without stretching: its side is the
/// frame length that magnifies to the multiple of 32 it is rendered at, so a tile may reach
/// beyond `r` (inside the frame where it fits; a side the frame cannot hold reaches past its
/// far edge, where rendering repeats the edge pixels and the detector's boxes are clipped).
/// Stretched tiles (a 1280x720 frame at 1x to 1280x736, a 392 px high tile at 2x to 800)
/// lowered the scores of the smallest faces most: faces_sizes re-encoded at quantizer 38, its
/// 12 px face scored 0.13-0.77 at exactly 2x and 0.06-0.59 at 2.04x vertically; at quantizer
/// 32, 0.25-0.70 at 1x with the rows padded and 0-0.22 stretched by 2%.
pub fn layout_in(r: Rect, zoom: f32, (frame_w, frame_h): (u32, u32)) -> Vec<Tile> {
    let (x1, y1) = ((r.x1 as u32).min(frame_w), (r.y1 as u32).min(frame_h));
    let (x0, y0) = ((r.x0 as u32).min(x1), (r.y0 as u32).min(y1));
    if x1 == x0 || y1 == y0 || zoom.is_nan() || zoom <= 0.0 {
        return Vec::new();
    }
    // (start, side, rendered side) of the tiles along one axis.
    let axis = |a0: u32, a1: u32, frame: u32, max_in: u32| -> Vec<(u32, u32, u32)> {
        let len = a1 - a0;
        let n = ((len as f32 * zoom) / max_in as f32).ceil().max(1.0) as u32;
        let base = if n == 1 {
            len
        } else {
            (len.div_ceil(n) + OVERLAP).min(len)
        };
        let rendered = ceil_to_multiple(((base as f32 * zoom).round() as u32).max(32), 32);
        // The longest side that still renders at `rendered` (a tile rounds side x zoom).
        let side = ((rendered as f32 / zoom).floor() as u32).max(base);
        if n == 1 || side >= len {
            // One tile, centred on the range, inside the frame where it fits.
            let start = if side >= frame {
                0
            } else {
                a0.saturating_sub((side - len) / 2).min(frame - side)
            };
            return vec![(start, side, rendered)];
        }
        let step = (len - side) as f32 / (n - 1) as f32;
        (0..n)
            .map(|i| {
                let start = a0 + ((i as f32 * step).round() as u32).min(len - side);
                (start, side, rendered)
            })
            .collect()
    };
    let xs = axis(x0, x1, frame_w, MAX_TILE_W);
    let ys = axis(y0, y1, frame_h, MAX_TILE_H);
    let mut tiles = Vec::with_capacity(xs.len() * ys.len());
    for &(y0, h, in_h) in &ys {
        for &(x0, w, in_w) in &xs {
            tiles.push(Tile {
                x0,
                y0,
                w,
                h,
                in_w,
                in_h,
            });
        }
    }
    tiles
}

/// How large the smallest face is shown when a sweep first looks for proposals
/// (`detect.zoom_proposal_threshold`): at 12 px YuNet-n scored every 12 px face of the
/// bundled clips 0.11 or more in every frame (faces_sizes: 0.11-0.9, median 0.6; city_pan's
/// 13 px face 0.83 or more; composite_pan's 12 px face 0.79 or more), where 2x scores 0.85+.
pub const PROPOSAL_FACE_PX: f32 = 12.0;

/// Side of the square blocks the change test compares (frame pixels).
pub const CHANGE_BLOCK: u32 = 8;
/// A block has changed when the mean absolute difference of its luma between two sweeps is
/// above this. On static content H.264 noise stays around 1–2 levels; a face entering, moving
/// or turning changes the pixels it covers by tens of levels, even where the block's mean
/// stays the same.
pub const CHANGE_THRESHOLD: u32 = 4;
/// When more than this share of the blocks changed (a pan, a lighting change), the whole frame
/// is swept.
pub const MAX_CHANGED_SHARE: f32 = 0.35;

/// The luma plane of a `width x height` frame without row padding: what the next sweep is
/// compared with.
pub fn packed_luma(y: &[u8], stride: usize, width: u32, height: u32) -> Vec<u8> {
    let w = width as usize;
    let mut out = Vec::with_capacity(w * height as usize);
    for row in 0..height as usize {
        out.extend_from_slice(&y[row * stride..row * stride + w]);
    }
    out
}

/// Whether each [`CHANGE_BLOCK`]-sized block changed between `prev` (packed) and `cur`
/// (rows of `stride`), row by row; partial blocks at the edges judge what they hold.
///
/// `align.shift` is the picture's motion between the two: the block at `(x, y)` of `cur` is
/// compared with `(x - dx, y - dy)` of `prev`. A block whose pixels were (partly) outside
/// `prev`, or within `align.margins` pixels of its low or high edge on each axis — what entered
/// the frame — has changed. Pixels within `align.ring` of `cur`'s own edge are not compared (a
/// filter's edge effects).
fn changed_blocks(
    prev: &[u8],
    cur: &[u8],
    stride: usize,
    width: u32,
    height: u32,
    align: Alignment,
) -> Vec<bool> {
    let Alignment {
        shift: (dx, dy),
        margins: ((xl, xh), (yl, yh)),
        ring,
    } = align;
    let b = CHANGE_BLOCK as usize;
    let (w, h) = (width as usize, height as usize);
    let (bw, bh) = (w.div_ceil(b), h.div_ceil(b));
    let mut sums = vec![0u32; bw * bh];
    let mut entered = vec![false; bw * bh];
    for row in 0..h {
        let by = row / b;
        let src_row = row as i64 - i64::from(dy);
        if src_row - yl < 0 || src_row + yh >= h as i64 {
            entered[by * bw..(by + 1) * bw].fill(true);
            continue;
        }
        let src_row = src_row as usize;
        let (p, c) = (
            &prev[src_row * w..src_row * w + w],
            &cur[row * stride..row * stride + w],
        );
        let in_ring = row < ring || row + ring >= h;
        for bx in 0..bw {
            let (x0, x1) = (bx * b, (bx * b + b).min(w));
            let (sx0, sx1) = (x0 as i64 - i64::from(dx), x1 as i64 - i64::from(dx));
            if sx0 - xl < 0 || sx1 + xh > w as i64 {
                entered[by * bw + bx] = true;
                continue;
            }
            if in_ring {
                continue;
            }
            // Columns within `ring` of the edge are left out.
            let (c0, c1) = (x0.max(ring), x1.min(w - ring.min(w)));
            if c1 <= c0 {
                continue;
            }
            let off = c0 - x0;
            sums[by * bw + bx] += p[sx0 as usize + off..sx0 as usize + off + (c1 - c0)]
                .iter()
                .zip(&c[c0..c1])
                .map(|(&a, &c)| u32::from(a.abs_diff(c)))
                .sum::<u32>();
        }
    }
    sums.iter()
        .zip(&entered)
        .enumerate()
        .map(|(i, (&s, &entered))| {
            let (bx, by) = (i % bw, i / bw);
            let n = ((w - bx * b).min(b) * (h - by * b).min(b)) as u32;
            entered || s > CHANGE_THRESHOLD * n
        })
        .collect()
}

/// How [`changed_blocks`] lines the two frames up.
#[derive(Debug, Clone, Copy, Default)]
struct Alignment {
    shift: (i32, i32),
    /// `((low x, high x), (low y, high y))`.
    margins: ((i64, i64), (i64, i64)),
    ring: usize,
}

/// Largest motion of the whole picture between two sweeps (a pan, a tilt) that the change test
/// follows, as a share of the frame's smaller side; beyond it the whole frame is swept.
pub const MAX_SHIFT_SHARE: f32 = 0.25;

/// A luma plane (packed rows) at one level of the motion search's pyramid: the frames
/// themselves at the base (borrowed), 2x2 means above.
struct Level<'a> {
    px: std::borrow::Cow<'a, [u8]>,
    w: usize,
    h: usize,
}

impl Level<'_> {
    /// Half the size on each axis, each pixel the mean of a 2x2 block.
    fn half(&self) -> Level<'static> {
        let (w, h) = (self.w / 2, self.h / 2);
        let mut px = Vec::with_capacity(w * h);
        for y in 0..h {
            let (r0, r1) = (
                &self.px[2 * y * self.w..][..2 * w],
                &self.px[(2 * y + 1) * self.w..][..2 * w],
            );
            px.extend((0..w).map(|x| {
                let s = u16::from(r0[2 * x])
                    + u16::from(r0[2 * x + 1])
                    + u16::from(r1[2 * x])
                    + u16::from(r1[2 * x + 1]);
                ((s + 2) / 4) as u8
            }));
        }
        Level {
            px: px.into(),
            w,
            h,
        }
    }

    /// Mean absolute difference between `self` (the current frame) and `prev` moved by
    /// `(dx, dy)`, over the pixels both hold, in 1/256 levels; `None` when they share less than
    /// a quarter of the frame.
    fn mad(&self, prev: &Level, (dx, dy): (i32, i32)) -> Option<u64> {
        let (w, h) = (self.w as i64, self.h as i64);
        let (dx, dy) = (i64::from(dx), i64::from(dy));
        let (x0, x1) = (dx.max(0), (w + dx).min(w));
        let (y0, y1) = (dy.max(0), (h + dy).min(h));
        if x1 <= x0 || y1 <= y0 || 4 * (x1 - x0) * (y1 - y0) < w * h {
            return None;
        }
        let (x0, x1) = (x0 as usize, x1 as usize);
        let mut sum = 0u64;
        for y in y0 as usize..y1 as usize {
            let c = &self.px[y * self.w..][x0..x1];
            let sy = (y as i64 - dy) as usize;
            let sx = (x0 as i64 - dx) as usize;
            let p = &prev.px[sy * prev.w..][sx..sx + (x1 - x0)];
            sum += p
                .iter()
                .zip(c)
                .map(|(&a, &b)| u32::from(a.abs_diff(b)))
                .sum::<u32>() as u64;
        }
        let n = ((x1 - x0) as u64) * ((y1 - y0) as u64);
        Some(sum * 256 / n)
    }
}

/// How the whole picture moved between two sweeps: `whole` pixels plus a `fraction` in
/// `[-0.5, 0.5]` on each axis (content at `(x, y)` of the earlier frame is at
/// `(x + dx + fx, y + dy + fy)` of the later one).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Motion {
    whole: (i32, i32),
    fraction: (f32, f32),
}

impl Motion {
    const NONE: Motion = Motion {
        whole: (0, 0),
        fraction: (0.0, 0.0),
    };

    /// The motion in pixels, fraction included.
    fn total(&self) -> (f32, f32) {
        (
            self.whole.0 as f32 + self.fraction.0,
            self.whole.1 as f32 + self.fraction.1,
        )
    }
}

/// The motion of the whole picture from `prev` to `cur` (both packed `w x h` luma), up to
/// [`MAX_SHIFT_SHARE`] of the smaller side. Searched coarse to fine on a pyramid of 2x2 means:
/// exhaustively at the coarsest level (about 80 px wide), then within one pixel at each finer
/// one; the fraction of a pixel (to 1/16) comes from a symmetric V through the differences at
/// the best whole shift and its neighbours. The result is only a guess: the block test that follows
/// decides whether it explains the picture.
fn estimate_motion<'a>(prev: &'a [u8], cur: &'a [u8], w: usize, h: usize) -> Option<Motion> {
    if w < 16 || h < 16 || prev.len() != w * h || cur.len() != w * h {
        return None;
    }
    let base = |px: &'a [u8]| Level {
        px: px.into(),
        w,
        h,
    };
    let mut pyramid = vec![(base(prev), base(cur))];
    while let Some((p, c)) = pyramid.last() {
        if p.w.min(p.h) < 64 {
            break;
        }
        let next = (p.half(), c.half());
        pyramid.push(next);
    }
    let top = pyramid.len() - 1;
    let max_shift = (w.min(h) as f32 * MAX_SHIFT_SHARE) as i32;
    let reach = (max_shift >> top).max(1);
    let best_of = |level: &(Level, Level), candidates: &mut dyn Iterator<Item = (i32, i32)>| {
        candidates
            .filter_map(|s| {
                level
                    .1
                    .mad(&level.0, s)
                    .map(|m| (m, s.0.abs() + s.1.abs(), s))
            })
            .min()
            .map(|(_, _, s)| s)
    };
    let mut shift = best_of(
        &pyramid[top],
        &mut (-reach..=reach).flat_map(|dy| (-reach..=reach).map(move |dx| (dx, dy))),
    )?;
    for level in pyramid[..top].iter().rev() {
        let (cx, cy) = (shift.0 * 2, shift.1 * 2);
        shift = best_of(
            level,
            &mut (-1..=1).flat_map(|dy| (-1..=1).map(move |dx| (cx + dx, cy + dy))),
        )?;
    }
    if shift.0.abs() > max_shift || shift.1.abs() > max_shift {
        return None;
    }
    let (p0, c0) = &pyramid[0];
    let mad = |d: (i32, i32)| c0.mad(p0, d).map(|m| m as f32);
    // Vertex of the symmetric V through (-1, a), (0, b), (1, c) (absolute differences grow
    // linearly away from the true shift), to 1/16 px; none unless b is a minimum.
    let vertex = |a: Option<f32>, b: Option<f32>, c: Option<f32>| match (a, b, c) {
        (Some(a), Some(b), Some(c)) if a >= b && c >= b && a.max(c) > b => {
            ((a - c) / (2.0 * (a.max(c) - b)) * 16.0)
                .round()
                .clamp(-8.0, 8.0)
                / 16.0
        }
        _ => 0.0,
    };
    let at = mad(shift);
    let fraction = (
        vertex(mad((shift.0 - 1, shift.1)), at, mad((shift.0 + 1, shift.1))),
        vertex(mad((shift.0, shift.1 - 1)), at, mad((shift.0, shift.1 + 1))),
    );
    Some(Motion {
        whole: shift,
        fraction,
    })
}

/// `src` (packed `w x h`) moved by a fraction of a pixel: the value at `(x, y)` is `src` at
/// `(x - fx, y - fy)`, bilinear in 8.8 fixed point (edges repeat).
fn shift_fraction(src: &[u8], w: usize, h: usize, (fx, fy): (f32, f32)) -> Vec<u8> {
    // The neighbour the fraction leans to (-1: left/up), and its weight.
    let taps = |f: f32| -> (isize, u32) {
        if f >= 0.0 {
            (-1, (f * 256.0).round() as u32)
        } else {
            (1, (-f * 256.0).round() as u32)
        }
    };
    let ((ox, wx), (oy, wy)) = (taps(fx), taps(fy));
    let clamp = |v: isize, len: usize| v.clamp(0, len as isize - 1) as usize;
    let mut rows = vec![0u32; w * h];
    for y in 0..h {
        let r = &src[y * w..][..w];
        for x in 0..w {
            let n = r[clamp(x as isize + ox, w)];
            rows[y * w + x] = u32::from(r[x]) * (256 - wx) + u32::from(n) * wx;
        }
    }
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        let n = clamp(y as isize + oy, h);
        for x in 0..w {
            let v = rows[y * w + x] * (256 - wy) + rows[n * w + x] * wy;
            out[y * w + x] = ((v + (1 << 15)) >> 16) as u8;
        }
    }
    out
}

/// A 3x3 box filter (edges repeat): after a sub-pixel pan the finest detail of two frames
/// differs even where nothing moved; what a face moving or turning changes stays.
fn smooth3(src: &[u8], w: usize, h: usize) -> Vec<u8> {
    let mut rows = vec![0u16; w * h];
    for y in 0..h {
        let r = &src[y * w..][..w];
        for x in 0..w {
            let (l, c, rt) = (r[x.saturating_sub(1)], r[x], r[(x + 1).min(w - 1)]);
            rows[y * w + x] = u16::from(l) + u16::from(c) + u16::from(rt);
        }
    }
    let mut out = vec![0u8; w * h];
    for y in 0..h {
        let (u, d) = (y.saturating_sub(1), (y + 1).min(h - 1));
        for x in 0..w {
            let s = u32::from(rows[u * w + x])
                + u32::from(rows[y * w + x])
                + u32::from(rows[d * w + x]);
            out[y * w + x] = ((s + 4) / 9) as u8;
        }
    }
    out
}

/// What changed between two sweeps: the changed blocks, and the regions the zoom pass must look
/// at again (the changed blocks' neighbourhoods grown by `pad` pixels, overlapping ones merged).
#[derive(Debug, Clone)]
pub struct ChangeSet {
    changed: Vec<bool>,
    bw: usize,
    bh: usize,
    width: u32,
    height: u32,
    /// How the whole picture moved since the last sweep (none for a still camera): what the
    /// last sweep found has moved with it.
    motion: Motion,
    pub regions: Vec<Rect>,
}

impl ChangeSet {
    /// Compares the luma of two sweeps of a `width x height` frame: `prev` as
    /// [`packed_luma`] kept it, `cur` in rows of `stride`. `None` when the whole frame must be
    /// swept: different sizes, or more than [`MAX_CHANGED_SHARE`] of the blocks changed.
    pub fn between(
        prev: &[u8],
        cur: &[u8],
        stride: usize,
        width: u32,
        height: u32,
        pad: u32,
    ) -> Option<Self> {
        Self::compare(prev, cur, stride, width, height, pad, true)
    }

    /// [`ChangeSet::between`], or with `follow_motion` false for a still camera only: `None`
    /// as soon as more than [`MAX_CHANGED_SHARE`] of the blocks changed, without looking for
    /// a pan (that search costs as much as a main-pass detector run at 360p).
    pub fn compare(
        prev: &[u8],
        cur: &[u8],
        stride: usize,
        width: u32,
        height: u32,
        pad: u32,
        follow_motion: bool,
    ) -> Option<Self> {
        let b = CHANGE_BLOCK;
        let (w, h) = (width as usize, height as usize);
        let (bw, bh) = (width.div_ceil(b) as usize, height.div_ceil(b) as usize);
        if w == 0 || h == 0 || prev.len() != w * h || stride < w || cur.len() < stride * (h - 1) + w
        {
            return None;
        }
        let too_many = |changed: &[bool]| {
            changed.iter().filter(|&&c| c).count() as f32 > MAX_CHANGED_SHARE * changed.len() as f32
        };
        let mut motion = Motion::NONE;
        let mut changed = changed_blocks(prev, cur, stride, width, height, Alignment::default());
        if too_many(&changed) {
            if !follow_motion {
                return None;
            }
            // Much changed: the camera may have moved (a pan, a tilt). When one motion of the
            // whole picture explains all but a few blocks, the rest was seen by the last sweep
            // and only what entered the frame or moved on its own is looked at again. A real
            // pan moves by fractions of a pixel: the earlier frame is moved by the fraction
            // too, and both are smoothed, so that re-sampled detail is not taken for change.
            let cur = packed_luma(cur, stride, width, height);
            motion = estimate_motion(prev, &cur, w, h)?;
            if motion == Motion::NONE {
                // Nothing moved as a whole: a cut, a lighting change, many things at once.
                return None;
            }
            let moved = smooth3(&shift_fraction(prev, w, h, motion.fraction), w, h);
            // A fraction of a pixel reaches one pixel further into the earlier frame, on the
            // side it leans to; the smoothing's edge pixels of the later frame are not compared.
            let lean = |f: f32| (i64::from(f > 0.0), i64::from(f < 0.0));
            let margins = (lean(motion.fraction.0), lean(motion.fraction.1));
            let smoothed = smooth3(&cur, w, h);
            changed = changed_blocks(
                &moved,
                &smoothed,
                w,
                width,
                height,
                Alignment {
                    shift: motion.whole,
                    margins,
                    ring: 1,
                },
            );
            if too_many(&changed) {
                return None;
            }
        }
        // Regions: each changed block grown by `pad`, merged until none overlap. Rows of
        // changed blocks are first joined into runs to keep the list short.
        let mut regions: Vec<Rect> = Vec::new();
        for by in 0..bh {
            let mut bx = 0;
            while bx < bw {
                if !changed[by * bw + bx] {
                    bx += 1;
                    continue;
                }
                let start = bx;
                while bx < bw && changed[by * bw + bx] {
                    bx += 1;
                }
                let (b, pad) = (b as usize, pad as usize);
                regions.push(Rect {
                    x0: (start * b).saturating_sub(pad),
                    y0: (by * b).saturating_sub(pad),
                    x1: (bx * b + pad).min(w),
                    y1: ((by + 1) * b + pad).min(h),
                });
            }
        }
        // Two overlapping regions become one only when their bounding box is no larger than
        // the two apart: each region holds its faces whole either way, and merging regions
        // that merely touch would sweep the empty space between them.
        let regions = merge_while(regions, |o, r| {
            o.overlaps(r) && o.union(r).area() <= o.area() + r.area()
        });
        Some(ChangeSet {
            changed,
            bw,
            bh,
            width,
            height,
            motion,
            regions,
        })
    }

    /// Where a face the last sweep found at `b` is now, when it can be kept without looking
    /// again: moved with the picture (fraction of a pixel included), clipped to the frame, with no
    /// changed block around it. `None`: it must be looked for again (the pixels around it
    /// changed, or it left the frame).
    pub fn carry(&self, b: crate::geom::BoxF) -> Option<crate::geom::BoxF> {
        let (dx, dy) = self.motion.total();
        let moved = crate::geom::BoxF::new(b.x + dx, b.y + dy, b.w, b.h)
            .clip(self.width as f32, self.height as f32);
        (moved.area() > 0.0 && !self.touches(moved.x, moved.y, moved.w, moved.h)).then_some(moved)
    }

    /// Whether any block changed at all.
    pub fn any(&self) -> bool {
        self.changed.iter().any(|&c| c)
    }

    /// Whether the picture moved as a whole since the last sweep (a pan, a tilt, a camera
    /// shaking by a fraction of a pixel) and the sweep follows it.
    pub fn follows_motion(&self) -> bool {
        self.motion != Motion::NONE
    }

    /// How the whole picture moved since the last sweep, in whole pixels (`(0, 0)` for a
    /// still camera or a move of less than half a pixel).
    pub fn shift(&self) -> (i32, i32) {
        self.motion.whole
    }

    /// Whether any changed block lies within one block of the box `(x, y, w, h)` (frame
    /// pixels): a detection there is no longer known to be right.
    pub fn touches(&self, x: f32, y: f32, w: f32, h: f32) -> bool {
        let b = CHANGE_BLOCK as f32;
        let clampx = |v: f32| (v / b).floor().clamp(0.0, (self.bw - 1) as f32) as usize;
        let clampy = |v: f32| (v / b).floor().clamp(0.0, (self.bh - 1) as f32) as usize;
        let (bx0, bx1) = (clampx(x - b), clampx(x + w + b));
        let (by0, by1) = (clampy(y - b), clampy(y + h + b));
        (by0..=by1).any(|by| (bx0..=bx1).any(|bx| self.changed[by * self.bw + bx]))
    }
}

/// Merges rectangles until no two overlap and no two lie so close that one rectangle over
/// both costs at most `slack` more pixels than the two apart (a detector run has a fixed cost
/// too: fewer, larger runs can be cheaper). Every pixel of the input lies in the output.
pub fn merge_regions(regions: Vec<Rect>, slack: u64) -> Vec<Rect> {
    merge_while(regions, |o, r| {
        o.overlaps(r) || o.union(r).area() <= o.area() + r.area() + slack
    })
}

/// Replaces two rectangles by the one over both while `join` holds for any pair, until it
/// holds for none.
fn merge_while(mut regions: Vec<Rect>, join: impl Fn(&Rect, &Rect) -> bool) -> Vec<Rect> {
    let mut merged = true;
    while merged {
        merged = false;
        let mut out: Vec<Rect> = Vec::with_capacity(regions.len());
        for r in regions {
            match out.iter_mut().find(|o| join(o, &r)) {
                Some(o) => {
                    *o = o.union(&r);
                    merged = true;
                }
                None => out.push(r),
            }
        }
        regions = out;
    }
    regions
}

/// Read-only I420 planes of a frame.
pub struct I420<'a> {
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub strides: [usize; 3],
    pub width: u32,
    pub height: u32,
}

impl I420<'_> {
    /// Whether every plane holds all of its rows (Y at full size, U and V at half size,
    /// rounded up) at its stride: what the renderers here read.
    pub fn is_complete(&self) -> bool {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let holds = |p: &[u8], stride: usize, pw: usize, ph: usize| {
            ph == 0 || (stride >= pw && p.len() >= stride * (ph - 1) + pw)
        };
        holds(self.y, self.strides[0], w, h)
            && holds(self.u, self.strides[1], cw, ch)
            && holds(self.v, self.strides[2], cw, ch)
    }
}

/// Whether a frame is grey (a camera in night infrared mode): at least 99% of its chroma
/// samples, on a grid of every 4th sample of every 4th row, within 6 levels of neutral (128).
/// Compression leaves a grey picture's chroma at 128 give or take a level or two; the
/// dullest colour scene (dusk, fog) has skin, signs or lights well beyond 6 somewhere.
pub fn is_grey(p: &I420<'_>) -> bool {
    let (cw, ch) = (
        (p.width as usize).div_ceil(2),
        (p.height as usize).div_ceil(2),
    );
    if !p.is_complete() || cw == 0 || ch == 0 {
        return false;
    }
    let (mut n, mut off) = (0usize, 0usize);
    for (plane, stride) in [(p.u, p.strides[1]), (p.v, p.strides[2])] {
        for row in (0..ch).step_by(4) {
            let r = &plane[row * stride..row * stride + cw];
            for &c in r.iter().step_by(4) {
                n += 1;
                if c.abs_diff(128) > 6 {
                    off += 1;
                }
            }
        }
    }
    off * 100 <= n
}

/// Bilinear sample positions along one axis: for each output index the two source indices
/// and the weight of the second, in 8.8 fixed point.
fn axis_taps(
    out_len: usize,
    start: u32,
    scale: f32,
    src_len: usize,
    chroma: bool,
) -> Vec<(usize, usize, u32)> {
    (0..out_len)
        .map(|o| {
            let mut p = start as f32 + (o as f32 + 0.5) * scale - 0.5;
            if chroma {
                p = (p + 0.5) / 2.0 - 0.5;
            }
            let p = p.clamp(0.0, (src_len - 1) as f32);
            let i0 = p.floor() as usize;
            let i1 = (i0 + 1).min(src_len - 1);
            (i0, i1, ((p - i0 as f32) * 256.0).round() as u32)
        })
        .collect()
}

/// Renders `tile` of the frame into `out`, one NCHW image of `tile.in_w x tile.in_h` with raw
/// 0..255 values in `order` (the detector's input tensor; no packed image in between):
/// bilinear sampling in 8.8 fixed point, BT.601 limited-range YUV → RGB.
///
/// Bilinear sampling is separable, so each output row first blends its two source rows over
/// the tile's source columns and then samples that row horizontally: the same result as
/// blending four samples per output pixel, at about half the work.
///
/// Panics if `out` is shorter than `3 * in_w * in_h`.
pub fn render_nchw(frame: &I420<'_>, tile: &Tile, order: ChannelOrder, out: &mut [f32]) {
    let (ow, oh) = (tile.in_w as usize, tile.in_h as usize);
    let plane = ow * oh;
    let out = &mut out[..3 * plane];
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    if fw == 0 || fh == 0 {
        out.fill(0.0);
        return;
    }
    let (sx, sy) = tile.back_scale();
    let (cw, ch) = (fw.div_ceil(2), fh.div_ceil(2));
    let xs = axis_taps(ow, tile.x0, sx, fw, false);
    let cxs = axis_taps(ow, tile.x0, sx, cw, true);
    let ys = axis_taps(oh, tile.y0, sy, fh, false);
    let cys = axis_taps(oh, tile.y0, sy, ch, true);
    // Source columns each plane's taps reach.
    let span = |taps: &[(usize, usize, u32)]| {
        let lo = taps.iter().map(|t| t.0).min().unwrap_or(0);
        let hi = taps.iter().map(|t| t.1).max().unwrap_or(0);
        (lo, hi + 1)
    };
    let (ylo, yhi) = span(&xs);
    let (clo, chi) = span(&cxs);
    let (xs, cxs) = (RowTaps::new(&xs, ylo), RowTaps::new(&cxs, clo));
    // Output channel planes: c0 is B for BGR, R for RGB.
    let (c0, rest) = out.split_at_mut(plane);
    let (c1, c2) = rest.split_at_mut(plane);
    let (r_plane, b_plane) = match order {
        ChannelOrder::Bgr => (c2, c0),
        ChannelOrder::Rgb => (c0, c2),
    };
    r_plane
        .par_chunks_mut(ow)
        .zip(c1.par_chunks_mut(ow))
        .zip(b_plane.par_chunks_mut(ow))
        .enumerate()
        .for_each_init(RowScratch::default, |sc, (oy, ((r_row, g_row), b_row))| {
            blend_rows(
                frame.y,
                frame.strides[0],
                ys[oy],
                ylo,
                yhi,
                &mut sc.blended[0],
            );
            blend_rows(
                frame.u,
                frame.strides[1],
                cys[oy],
                clo,
                chi,
                &mut sc.blended[1],
            );
            blend_rows(
                frame.v,
                frame.strides[2],
                cys[oy],
                clo,
                chi,
                &mut sc.blended[2],
            );
            xs.sample(&sc.blended[0], &mut sc.sampled[0]);
            cxs.sample(&sc.blended[1], &mut sc.sampled[1]);
            cxs.sample(&sc.blended[2], &mut sc.sampled[2]);
            let [l, u, v] = &sc.sampled;
            yuv_rows_to_rgb(l, u, v, [r_row, g_row, b_row]);
        });
}

/// One output row's working rows: blended source rows and their horizontal samples, per plane.
#[derive(Default)]
struct RowScratch {
    blended: [Vec<u32>; 3],
    sampled: [Vec<i32>; 3],
}

/// Horizontal bilinear taps as three arrays (source indices relative to the blended row's
/// first column, and both weights), so that sampling a row is a plain loop.
struct RowTaps {
    i0: Vec<usize>,
    i1: Vec<usize>,
    w0: Vec<u32>,
    w1: Vec<u32>,
}

impl RowTaps {
    fn new(taps: &[(usize, usize, u32)], lo: usize) -> RowTaps {
        RowTaps {
            i0: taps.iter().map(|t| t.0 - lo).collect(),
            i1: taps.iter().map(|t| t.1 - lo).collect(),
            w0: taps.iter().map(|t| 256 - t.2).collect(),
            w1: taps.iter().map(|t| t.2).collect(),
        }
    }

    /// Samples a blended row (8.8 fixed point, as [`blend_rows`] makes it) at every output
    /// column, rounded to 0..255.
    #[inline]
    fn sample(&self, row: &[u32], out: &mut Vec<i32>) {
        out.clear();
        out.extend(
            self.i0
                .iter()
                .zip(&self.i1)
                .zip(self.w0.iter().zip(&self.w1))
                .map(|((&a, &b), (&wa, &wb))| {
                    let v = row[a] * wa + row[b] * wb;
                    ((v + (1 << 15)) >> 16) as i32
                }),
        );
    }
}

/// Blends source rows `y.0` and `y.1` (weight `y.2` / 256 on the second) over columns
/// `lo..hi` into `out`, in 8.8 fixed point.
#[inline]
fn blend_rows(
    p: &[u8],
    stride: usize,
    y: (usize, usize, u32),
    lo: usize,
    hi: usize,
    out: &mut Vec<u32>,
) {
    let r0 = &p[y.0 * stride + lo..y.0 * stride + hi];
    let r1 = &p[y.1 * stride + lo..y.1 * stride + hi];
    out.clear();
    out.extend(
        r0.iter()
            .zip(r1)
            .map(|(&a, &b)| a as u32 * (256 - y.2) + b as u32 * y.2),
    );
}

/// [`yuv_to_rgb`] over whole rows (one Y, U and V value per output pixel) into the float
/// rows of the R, G and B planes: plain element-wise arithmetic, which the compiler
/// vectorises. Always inlined, so that it is compiled for the CPU features of its caller
/// (`shrink` has an AVX2 build).
#[inline(always)]
pub(crate) fn yuv_rows_to_rgb(l: &[i32], u: &[i32], v: &[i32], [r, g, b]: [&mut [f32]; 3]) {
    let n = r
        .len()
        .min(g.len())
        .min(b.len())
        .min(l.len())
        .min(u.len())
        .min(v.len());
    for i in 0..n {
        let c = 298 * (l[i] - 16) + 128;
        let (d, e) = (u[i] - 128, v[i] - 128);
        r[i] = ((c + 409 * e) >> 8).clamp(0, 255) as f32;
        g[i] = ((c - 100 * d - 208 * e) >> 8).clamp(0, 255) as f32;
        b[i] = ((c + 516 * d) >> 8).clamp(0, 255) as f32;
    }
}

/// BT.601 limited range to full-range RGB, integer arithmetic (coefficients x 256): the
/// reference the row conversion is tested against.
#[cfg(test)]
pub(crate) fn yuv_to_rgb(y: i32, u: i32, v: i32) -> (u8, u8, u8) {
    let c = 298 * (y - 16);
    let (d, e) = (u - 128, v - 128);
    let q = |v: i32| ((v + 128) >> 8).clamp(0, 255) as u8;
    (q(c + 409 * e), q(c - 100 * d - 208 * e), q(c + 516 * d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_small_frame_is_one_tile_and_720p_at_2x_is_four() {
        let t = layout(640, 360, 2.0);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].in_w, t[0].in_h), (1280, 736));
        // 368 rows at 2x are 736: the tile reaches 8 rows past the frame instead of stretching.
        assert_eq!((t[0].w, t[0].h), (640, 368));
        let t = layout(1280, 720, 2.0);
        assert_eq!(t.len(), 4);
        assert!(
            t.iter()
                .all(|t| (t.w, t.h, t.in_w, t.in_h) == (672, 400, 1344, 800))
        );
        assert_eq!((t[3].x0, t[3].y0), (608, 320));
        assert!(
            t.iter()
                .all(|t| t.in_w <= MAX_TILE_W + 96 && t.in_h <= MAX_TILE_H + 96)
        );
    }

    #[test]
    fn a_grey_picture_is_grey_and_a_dull_or_partly_coloured_one_is_not() {
        let (w, h) = (320usize, 180usize);
        let (cw, ch) = (w / 2, h / 2);
        let y = vec![90u8; w * h];
        let is = |u: &[u8], v: &[u8]| {
            is_grey(&I420 {
                y: &y,
                u,
                v,
                strides: [w, cw, cw],
                width: w as u32,
                height: h as u32,
            })
        };
        // Infrared: neutral chroma, compression noise of a level or two.
        let noisy: Vec<u8> = (0..cw * ch).map(|i| 126 + (i * 7 % 5) as u8).collect();
        assert!(is(&noisy, &noisy));
        // Dusk: dull, but coloured everywhere.
        let (u, v) = (vec![120u8; cw * ch], vec![137u8; cw * ch]);
        assert!(!is(&u, &v));
        // A grey scene with a coloured sign over a tenth of its rows.
        let mut sign = noisy.clone();
        sign[..cw * ch / 10].fill(170);
        assert!(!is(&sign, &noisy));
        // Planes short of their rows are never taken for grey.
        assert!(!is(&noisy[..cw], &noisy));
    }

    #[test]
    fn planes_short_of_their_rows_are_not_complete() {
        fn f<'a>(y: &'a [u8], u: &'a [u8], stride: usize) -> I420<'a> {
            I420 {
                y,
                u,
                v: u,
                strides: [stride, 8, 8],
                width: 16,
                height: 8,
            }
        }
        let (y, c) = (vec![0u8; 16 * 8], vec![0u8; 8 * 4]);
        assert!(f(&y, &c, 16).is_complete());
        assert!(!f(&y[..16 * 7], &c, 16).is_complete(), "a row short");
        assert!(
            !f(&y, &c[..8 * 3 + 7], 16).is_complete(),
            "a chroma byte short"
        );
        assert!(!f(&y, &c, 15).is_complete(), "stride below the width");
    }

    #[test]
    fn grey_renders_grey_and_channel_order_is_respected() {
        let (w, h) = (8usize, 4usize);
        let y = vec![126u8; w * h];
        let u = vec![128u8; w * h / 4];
        // Strong red: V high.
        let v = vec![240u8; w * h / 4];
        let f = I420 {
            y: &y,
            u: &u,
            v: &v,
            strides: [w, w / 2, w / 2],
            width: w as u32,
            height: h as u32,
        };
        let tile = Tile {
            x0: 0,
            y0: 0,
            w: 8,
            h: 4,
            in_w: 32,
            in_h: 32,
        };
        let n = 32 * 32;
        let (mut rgb, mut bgr) = (vec![0f32; 3 * n], vec![0f32; 3 * n]);
        render_nchw(&f, &tile, ChannelOrder::Rgb, &mut rgb);
        render_nchw(&f, &tile, ChannelOrder::Bgr, &mut bgr);
        // Every pixel is the same strong red; planes are R, G, B (RGB) or B, G, R (BGR).
        assert!(rgb[..n].iter().all(|&r| r > 200.0), "{}", rgb[0]);
        assert!(rgb[2 * n..].iter().all(|&b| b < 150.0), "{}", rgb[2 * n]);
        assert_eq!(rgb[..n], bgr[2 * n..]);
        assert_eq!(rgb[2 * n..], bgr[..n]);
        assert_eq!(rgb[n..2 * n], bgr[n..2 * n]);
    }

    /// The direct four-sample bilinear formula the separable renderer must equal exactly.
    fn reference_pixel(f: &I420<'_>, t: &Tile, ox: usize, oy: usize) -> (u8, u8, u8) {
        let (sx, sy) = t.back_scale();
        let (fw, fh) = (f.width as usize, f.height as usize);
        let xs = axis_taps(t.in_w as usize, t.x0, sx, fw, false);
        let cxs = axis_taps(t.in_w as usize, t.x0, sx, fw.div_ceil(2), true);
        let ys = axis_taps(t.in_h as usize, t.y0, sy, fh, false);
        let cys = axis_taps(t.in_h as usize, t.y0, sy, fh.div_ceil(2), true);
        let lerp2 = |p: &[u8], stride: usize, x: (usize, usize, u32), y: (usize, usize, u32)| {
            let (r0, r1) = (&p[y.0 * stride..], &p[y.1 * stride..]);
            let top = r0[x.0] as u32 * (256 - x.2) + r0[x.1] as u32 * x.2;
            let bot = r1[x.0] as u32 * (256 - x.2) + r1[x.1] as u32 * x.2;
            ((top * (256 - y.2) + bot * y.2 + (1 << 15)) >> 16) as i32
        };
        yuv_to_rgb(
            lerp2(f.y, f.strides[0], xs[ox], ys[oy]),
            lerp2(f.u, f.strides[1], cxs[ox], cys[oy]),
            lerp2(f.v, f.strides[2], cxs[ox], cys[oy]),
        )
    }

    proptest! {
        #[test]
        fn separable_render_equals_four_sample_bilinear(
            w in 2usize..48, h in 2usize..40, seed in any::<u64>(), z in 0.7f32..2.5, pick in any::<u32>()
        ) {
            let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
            // Padded strides, pseudo-random content.
            let fill = |n: usize, k: u64| (0..n).map(|i| ((i as u64 * 2654435761 + seed + k) >> 7) as u8).collect::<Vec<u8>>();
            let (y, u, v) = (fill((w + 3) * h, 1), fill((cw + 1) * ch, 2), fill((cw + 1) * ch, 3));
            let f = I420 { y: &y, u: &u, v: &v, strides: [w + 3, cw + 1, cw + 1], width: w as u32, height: h as u32 };
            let tiles = layout(w as u32, h as u32, z);
            let t = tiles[pick as usize % tiles.len()];
            let n = (t.in_w * t.in_h) as usize;
            let mut out = vec![0f32; 3 * n];
            render_nchw(&f, &t, ChannelOrder::Rgb, &mut out);
            for k in 0..16 {
                let idx = (pick as usize).wrapping_mul(31).wrapping_add(k * 977) % n;
                let (ox, oy) = (idx % t.in_w as usize, idx / t.in_w as usize);
                let (r, g, b) = reference_pixel(&f, &t, ox, oy);
                prop_assert_eq!((out[idx], out[n + idx], out[2 * n + idx]), (f32::from(r), f32::from(g), f32::from(b)));
            }
        }
    }

    fn frame_with_square(w: usize, h: usize, sq: Option<(usize, usize)>) -> Vec<u8> {
        let mut y = vec![90u8; w * h];
        if let Some((x0, y0)) = sq {
            for r in y0..y0 + 12 {
                for c in x0..x0 + 12 {
                    // Textured, with the background's mean: a mean test would not see it.
                    y[r * w + c] = if (r + c) % 2 == 0 { 40 } else { 140 };
                }
            }
        }
        y
    }

    #[test]
    fn a_static_frame_has_nothing_to_look_at_again() {
        let a = frame_with_square(320, 240, Some((100, 100)));
        let c = ChangeSet::between(&a, &a, 320, 320, 240, 56).unwrap();
        assert!(c.regions.is_empty());
        assert!(!c.touches(100.0, 100.0, 12.0, 12.0));
    }

    #[test]
    fn a_moved_face_is_looked_at_again_where_it_was_and_where_it_is() {
        let a = frame_with_square(320, 240, Some((40, 40)));
        // The current frame has padded rows (stride 336).
        let b: Vec<u8> = frame_with_square(320, 240, Some((200, 150)))
            .chunks(320)
            .flat_map(|r| r.iter().copied().chain([0u8; 16]))
            .collect();
        let c = ChangeSet::between(&a, &b, 336, 320, 240, 56).unwrap();
        let covers = |x: usize, y: usize| {
            c.regions
                .iter()
                .any(|r| r.x0 <= x && x + 12 <= r.x1 && r.y0 <= y && y + 12 <= r.y1)
        };
        assert!(covers(40, 40) && covers(200, 150), "{:?}", c.regions);
        assert!(c.touches(40.0, 40.0, 12.0, 12.0) && c.touches(200.0, 150.0, 12.0, 12.0));
        // Far from both, nothing changed.
        assert!(!c.touches(10.0, 200.0, 12.0, 12.0));
        for r in &c.regions {
            assert!(r.x1 <= 320 && r.y1 <= 240);
        }
        // Tiles over the regions stay inside the frame.
        for r in &c.regions {
            let tiles = layout_in(*r, 2.0, (320, 240));
            assert!(!tiles.is_empty());
            for t in &tiles {
                assert!(t.x0 + t.w <= 320 && t.y0 + t.h <= 240, "{t:?}");
            }
        }
    }

    /// `get` (a grid of samples, `get(x, y)`) at the non-negative point `(x, y)`, bilinear.
    fn bilinear(get: impl Fn(usize, usize) -> f32, x: f32, y: f32) -> f32 {
        let (ix, iy) = (x.floor() as usize, y.floor() as usize);
        let (tx, ty) = (x - ix as f32, y - iy as f32);
        get(ix, iy) * (1.0 - tx) * (1.0 - ty)
            + get(ix + 1, iy) * tx * (1.0 - ty)
            + get(ix, iy + 1) * (1.0 - tx) * ty
            + get(ix + 1, iy + 1) * tx * ty
    }

    /// A picture with detail at every scale, like a photo: random values on grids of 32, 8 and
    /// 2 px, each bilinearly interpolated, summed (deterministic for `seed`).
    fn photo(w: usize, h: usize, seed: u64) -> Vec<u8> {
        photo_with(w, h, seed, &[(32, 120.0), (8, 60.0), (2, 20.0)])
    }

    /// As [`photo`], with the detail of `layers` (grid cell in pixels, amplitude).
    fn photo_with(w: usize, h: usize, seed: u64, layers: &[(usize, f32)]) -> Vec<u8> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut rnd = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 1000) as f32 / 1000.0
        };
        let mut out = vec![0f32; w * h];
        for &(cell, amp) in layers {
            let (gw, gh) = (w / cell + 2, h / cell + 2);
            let grid: Vec<f32> = (0..gw * gh).map(|_| rnd() * amp).collect();
            for y in 0..h {
                for x in 0..w {
                    let (fx, fy) = (x as f32 / cell as f32, y as f32 / cell as f32);
                    out[y * w + x] += bilinear(|i, j| grid[j * gw + i], fx, fy);
                }
            }
        }
        out.iter()
            .map(|&v| (v + 28.0).clamp(0.0, 255.0) as u8)
            .collect()
    }

    /// `src` (a `big_w`-wide picture) seen through a `w x h` window at `(x0, y0)`.
    fn window(src: &[u8], big_w: usize, x0: usize, y0: usize, w: usize, h: usize) -> Vec<u8> {
        (0..h)
            .flat_map(|y| src[(y0 + y) * big_w + x0..][..w].iter().copied())
            .collect()
    }

    #[test]
    fn a_pan_is_followed_and_only_what_entered_the_frame_is_looked_at_again() {
        let (bw, bh) = (400usize, 300usize);
        let (w, h) = (320usize, 240usize);
        let scene = photo(bw, bh, 7);
        // The window moves 6 px right and 3 px up: the picture moves by (-6, +3).
        let prev = window(&scene, bw, 40, 30, w, h);
        let cur = window(&scene, bw, 46, 27, w, h);
        let pad = 34usize;
        let c = ChangeSet::between(&prev, &cur, w, w as u32, h as u32, pad as u32).unwrap();
        assert_eq!(c.shift(), (-6, 3));
        // Looked at again: the right edge (entered) and the top (entered), nothing else.
        for r in &c.regions {
            let right = r.x1 == w && r.x0 >= w - 6 - pad - 8;
            let top = r.y0 == 0 && r.y1 <= 3 + pad + 8;
            assert!(right || top, "{r:?} in {:?}", c.regions);
        }
        let covered = |x: usize, y: usize| {
            c.regions
                .iter()
                .any(|r| r.x0 <= x && x < r.x1 && r.y0 <= y && y < r.y1)
        };
        assert!(covered(w - 1, h / 2) && covered(w / 2, 0) && !covered(w / 2, h / 2));
        // A face seen in the middle moved with the picture; one at the right edge is looked
        // for again.
        let kept = c
            .carry(crate::geom::BoxF::new(100.0, 100.0, 14.0, 16.0))
            .unwrap();
        let near = |a: f32, b: f32| (a - b).abs() < 0.2;
        assert!(
            near(kept.x, 94.0) && near(kept.y, 103.0) && kept.w == 14.0 && kept.h == 16.0,
            "{kept:?}"
        );
        assert!(
            c.carry(crate::geom::BoxF::new(310.0, 100.0, 14.0, 16.0))
                .is_none()
        );
    }

    #[test]
    fn the_still_camera_test_gives_up_on_a_pan_and_sees_a_still_frame_unchanged() {
        let (bw, bh) = (400usize, 300usize);
        let (w, h) = (320usize, 240usize);
        let scene = photo(bw, bh, 7);
        let prev = window(&scene, bw, 40, 30, w, h);
        let cur = window(&scene, bw, 46, 27, w, h);
        assert!(ChangeSet::between(&prev, &cur, w, w as u32, h as u32, 34).is_some());
        assert!(ChangeSet::compare(&prev, &cur, w, w as u32, h as u32, 34, false).is_none());
        let same = ChangeSet::compare(&prev, &prev, w, w as u32, h as u32, 34, false).unwrap();
        assert!(!same.any() && same.regions.is_empty());
        // One patch changed: it is the only thing to look at again.
        let mut patched = prev.clone();
        for y in 100..120 {
            for x in 200..230 {
                patched[y * w + x] = patched[y * w + x].wrapping_add(60);
            }
        }
        let c = ChangeSet::compare(&prev, &patched, w, w as u32, h as u32, 16, false).unwrap();
        assert!(c.any() && !c.follows_motion());
        assert!(
            c.regions
                .iter()
                .all(|r| r.x0 >= 200 - 16 - 8 && r.x1 <= 230 + 16 + 8)
        );
        assert!(
            c.carry(crate::geom::BoxF::new(20.0, 20.0, 40.0, 40.0))
                .is_some()
        );
        assert!(
            c.carry(crate::geom::BoxF::new(190.0, 90.0, 40.0, 40.0))
                .is_none()
        );
    }

    /// `src` seen through a window at a fractional position, bilinear (what a camera's pan
    /// gives: no frame's pixels are a copy of the last one's).
    fn window_at(src: &[u8], big_w: usize, x0: f32, y0: f32, w: usize, h: usize) -> Vec<u8> {
        let g = |x: usize, y: usize| f32::from(src[y * big_w + x]);
        (0..h)
            .flat_map(|y| {
                (0..w).map(move |x| bilinear(g, x as f32 + x0, y as f32 + y0).round() as u8)
            })
            .collect()
    }

    /// Two 320x240 views of a sharp picture (detail down to single pixels, which a sub-pixel
    /// move changes): through a window at (40, 30), then at `to`.
    fn sharp_pan(seed: u64, to: (f32, f32)) -> (Vec<u8>, Vec<u8>) {
        let scene = photo_with(
            400,
            300,
            seed,
            &[(32, 110.0), (8, 50.0), (2, 30.0), (1, 24.0)],
        );
        (
            window_at(&scene, 400, 40.0, 30.0, 320, 240),
            window_at(&scene, 400, to.0, to.1, 320, 240),
        )
    }

    #[test]
    fn a_pan_by_fractions_of_a_pixel_is_followed_as_closely() {
        let (w, h) = (320usize, 240usize);
        // The picture moves by (-6.4, +2.7).
        let (prev, cur) = sharp_pan(13, (46.4, 27.3));
        let pad = 34usize;
        let c = ChangeSet::between(&prev, &cur, w, w as u32, h as u32, pad as u32).unwrap();
        let kept = c
            .carry(crate::geom::BoxF::new(100.0, 100.0, 14.0, 16.0))
            .unwrap();
        assert!(
            (kept.x - 93.6).abs() <= 0.2 && (kept.y - 102.7).abs() <= 0.2,
            "{kept:?} {:?}",
            c.shift()
        );
        // Only the edges the picture entered from are looked at again.
        for r in &c.regions {
            let right = r.x1 == w && r.x0 + 7 + pad + 16 >= w;
            let top = r.y0 == 0 && r.y1 <= 3 + pad + 16;
            assert!(right || top, "{r:?} in {:?}", c.regions);
        }
    }

    #[test]
    fn a_camera_shaking_by_a_fraction_of_a_pixel_is_followed() {
        let (w, h) = (320usize, 240usize);
        let (prev, cur) = sharp_pan(17, (40.4, 29.6));
        let c = ChangeSet::between(&prev, &cur, w, w as u32, h as u32, 34).unwrap();
        assert_eq!(c.shift(), (0, 0));
        assert!(c.follows_motion());
        // The picture moved by (-0.4, +0.4): a sliver entered at the right and at the top.
        for r in &c.regions {
            let right = r.x1 == w && r.x0 + 8 + 34 >= w;
            let top = r.y0 == 0 && r.y1 <= 8 + 34;
            assert!(right || top, "{r:?} in {:?}", c.regions);
        }
        let kept = c
            .carry(crate::geom::BoxF::new(100.0, 100.0, 14.0, 16.0))
            .unwrap();
        assert!(
            (kept.x - 99.6).abs() <= 0.2 && (kept.y - 100.4).abs() <= 0.2,
            "{kept:?}"
        );
        // The same picture again: nothing moved, nothing to follow.
        let still = ChangeSet::between(&prev, &prev, w, w as u32, h as u32, 34).unwrap();
        assert!(!still.follows_motion() && still.regions.is_empty());
    }

    #[test]
    fn a_face_moving_across_a_panning_picture_is_looked_at_again() {
        let (bw, bh) = (400usize, 300usize);
        let (w, h) = (320usize, 240usize);
        let scene = photo(bw, bh, 11);
        let prev = window(&scene, bw, 40, 30, w, h);
        let mut cur = window(&scene, bw, 30, 30, w, h);
        // Something the size of a small face, in the middle, that did not move with the camera.
        for y in 100..116 {
            for x in 150..164 {
                cur[y * w + x] = if (x + y) % 2 == 0 { 10 } else { 240 };
            }
        }
        let c = ChangeSet::between(&prev, &cur, w, w as u32, h as u32, 34).unwrap();
        assert_eq!(c.shift(), (10, 0));
        assert!(
            c.regions
                .iter()
                .any(|r| r.x0 <= 150 && 164 <= r.x1 && r.y0 <= 100 && 116 <= r.y1),
            "{:?}",
            c.regions
        );
        assert!(c.touches(150.0, 100.0, 14.0, 16.0));
    }

    #[test]
    fn a_lighting_change_or_another_picture_sweeps_the_whole_frame() {
        let (w, h) = (320usize, 240usize);
        let a = photo(w, h, 3);
        let brighter: Vec<u8> = a.iter().map(|&v| v.saturating_add(40)).collect();
        assert!(ChangeSet::between(&a, &brighter, w, 320, 240, 56).is_none());
        let cut = photo(w, h, 4);
        assert!(ChangeSet::between(&a, &cut, w, 320, 240, 56).is_none());
        // A pan too far to follow (over a quarter of the smaller side).
        let scene = photo(480, 240, 5);
        let (p, c) = (
            window(&scene, 480, 0, 0, w, h),
            window(&scene, 480, 100, 0, w, h),
        );
        assert!(ChangeSet::between(&p, &c, w, 320, 240, 56).is_none());
        // A frame of another size cannot be compared either.
        assert!(ChangeSet::between(&a[1..], &a, w, 320, 240, 56).is_none());
        assert!(ChangeSet::between(&a, &a[..w * 100], w, 320, 240, 56).is_none());
    }

    #[test]
    fn packed_luma_drops_row_padding() {
        let y = [1u8, 2, 0, 3, 4, 0];
        assert_eq!(packed_luma(&y, 3, 2, 2), vec![1, 2, 3, 4]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any pan within reach that changes more than 35% of the blocks is found exactly, and
        /// every block showing what was outside the last sweep's frame is looked at again.
        #[test]
        fn pans_are_found_and_what_entered_is_always_looked_at(
            dx in -40i32..=40, dy in -40i32..=40, seed in 0u64..1000,
        ) {
            let (w, h) = (320usize, 192usize);
            let scene = photo(w + 80, h + 80, seed);
            let prev = window(&scene, w + 80, 40, 40, w, h);
            let cur = window(&scene, w + 80, (40 - dx) as usize, (40 - dy) as usize, w, h);
            let c = ChangeSet::between(&prev, &cur, w, w as u32, h as u32, 34);
            let c = c.expect("a pan within reach is followed");
            if !c.follows_motion() {
                // A pan of a pixel or two over smooth content can change at most 35% of the
                // blocks: then no motion is searched for, by design, and the strip that came
                // in (too narrow to hold a face) waits for the next sweep that changes enough,
                // or the next full one (seed 0 with dx = 1 did so).
                prop_assert_eq!(c.shift(), (0, 0));
                prop_assert!(dx.abs().max(dy.abs()) <= 2, "a pan of ({}, {}) not followed", dx, dy);
                return Ok(());
            }
            prop_assert_eq!(c.shift(), (dx, dy));
            let b = CHANGE_BLOCK as usize;
            let (bw, bh) = (w.div_ceil(b), h.div_ceil(b));
            for by in 0..bh {
                for bx in 0..bw {
                    // The block's pixels in the last sweep's frame.
                    let (x0, y0) = ((bx * b) as i32 - dx, (by * b) as i32 - dy);
                    let (x1, y1) = (
                        (bx * b + b).min(w) as i32 - dx,
                        (by * b + b).min(h) as i32 - dy,
                    );
                    if x0 < 0 || y0 < 0 || x1 > w as i32 || y1 > h as i32 {
                        prop_assert!(c.changed[by * bw + bx], "block ({}, {})", bx, by);
                    }
                }
            }
        }

        /// The tiles over a region cover it, are rendered without stretching (the magnified
        /// side is the rendered size to within the zoom), stay inside the frame where they fit
        /// and reach past its far edge by less than a tile's rounding where they do not.
        #[test]
        fn tiles_over_a_region_cover_it_unstretched(
            x0 in 0u32..1400, y0 in 0u32..800, w in 1u32..1500, h in 1u32..900,
            zoom in prop::sample::select(vec![0.75f32, 1.0, 1.5, 2.0, 2.4, 3.0]),
            fw in 32u32..1400, fh in 32u32..800,
        ) {
            let r = Rect { x0: x0.min(fw - 1) as usize, y0: y0.min(fh - 1) as usize, x1: (x0 + w).min(fw) as usize, y1: (y0 + h).min(fh) as usize };
            prop_assume!(r.x1 > r.x0 && r.y1 > r.y0);
            let tiles = layout_in(r, zoom, (fw, fh));
            prop_assert!(!tiles.is_empty());
            for t in &tiles {
                prop_assert!(t.in_w % 32 == 0 && t.in_h % 32 == 0);
                for (side, rendered, lo, frame) in [(t.w, t.in_w, t.x0, fw), (t.h, t.in_h, t.y0, fh)] {
                    prop_assert!((side as f32 * zoom - rendered as f32).abs() <= zoom.max(1.0), "{:?} at {}", t, zoom);
                    prop_assert!(lo + side <= frame || (lo == 0 && ((lo + side - frame) as f32) * zoom < 32.0), "{:?} in {}x{}", t, fw, fh);
                }
            }
            let mut pts: Vec<(usize, usize)> = vec![(r.x0, r.y0), (r.x1 - 1, r.y1 - 1), (r.x0, r.y1 - 1), (r.x1 - 1, r.y0)];
            for i in 0..10 { for j in 0..10 { pts.push((r.x0 + r.width() * i / 10, r.y0 + r.height() * j / 10)); } }
            for (x, y) in pts {
                let (x, y) = (x as u32, y as u32);
                prop_assert!(tiles.iter().any(|t| x >= t.x0 && x < t.x0 + t.w && y >= t.y0 && y < t.y0 + t.h), "({},{}) of {:?} uncovered by {:?}", x, y, r, tiles);
            }
        }

        #[test]
        fn merged_regions_hold_every_input_and_do_not_overlap(
            rects in proptest::collection::vec((0usize..600, 0usize..400, 1usize..200, 1usize..200), 0..24),
            slack in 0u64..20_000,
        ) {
            let input: Vec<Rect> = rects
                .iter()
                .map(|&(x0, y0, w, h)| Rect { x0, y0, x1: x0 + w, y1: y0 + h })
                .collect();
            let out = merge_regions(input.clone(), slack);
            prop_assert!(out.len() <= input.len());
            for r in &input {
                prop_assert!(
                    out.iter().any(|o| o.x0 <= r.x0 && o.y0 <= r.y0 && r.x1 <= o.x1 && r.y1 <= o.y1),
                    "{:?} not held by {:?}", r, out
                );
            }
            for (i, a) in out.iter().enumerate() {
                for b in &out[i + 1..] {
                    prop_assert!(!a.overlaps(b), "{:?} overlaps {:?}", a, b);
                    prop_assert!(a.union(b).area() > a.area() + b.area() + slack);
                }
            }
        }

        #[test]
        fn tiles_cover_every_pixel_and_stay_inside(w in 1u32..4000, h in 1u32..2500, z in 0.5f32..3.0) {
            let tiles = layout(w, h, z);
            prop_assert!(!tiles.is_empty());
            for t in &tiles {
                // Inside, but for a side the frame cannot hold at its rendered size.
                prop_assert!(t.x0 + t.w <= w || (t.x0 == 0 && ((t.w - w) as f32) * z < 32.0));
                prop_assert!(t.y0 + t.h <= h || (t.y0 == 0 && ((t.h - h) as f32) * z < 32.0));
                prop_assert!(t.in_w % 32 == 0 && t.in_h % 32 == 0);
            }
            // Check coverage on a coarse grid of sample points plus the far corner.
            let mut pts: Vec<(u32, u32)> = vec![(w - 1, h - 1), (0, 0)];
            for i in 0..20 { for j in 0..20 { pts.push((w * i / 20, h * j / 20)); } }
            for (x, y) in pts {
                prop_assert!(tiles.iter().any(|t| x >= t.x0 && x < t.x0 + t.w && y >= t.y0 && y < t.y0 + t.h), "({x},{y}) uncovered");
            }
        }
    }
}
