//! The zoom pass: finds faces too small for the main pass by running the detector on
//! magnified tiles of the full-resolution frame, every few frames.
//!
//! Why: in compressed video a 12 px face is not found reliably at any scale up to 1x (YuNet
//! scores it 0.2-0.4 even at native size), but at 2x it scores 0.85+. Magnifying the whole
//! frame every frame costs about 8x the main pass, so the zoom pass runs every
//! `detect.zoom_every` frames and the tracker (gap filling, look-back, look-ahead) covers the
//! frames between.
//!
//! Owns: the tile layout (pure, property-tested) and rendering a tile from I420 planes into a
//! packed BGR/RGB image with bilinear sampling. Must not touch: models (it returns images)
//! or GStreamer (it reads plain plane slices).

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
/// at least one tile; neighbouring tiles overlap by [`OVERLAP`] pixels.
pub fn layout(width: u32, height: u32, zoom: f32) -> Vec<Tile> {
    layout_in(
        Rect {
            x0: 0,
            y0: 0,
            x1: width as usize,
            y1: height as usize,
        },
        zoom,
    )
}

/// Tiles covering the rectangle `r` of a frame at magnification `zoom`, as [`layout`] covers
/// a whole frame.
pub fn layout_in(r: Rect, zoom: f32) -> Vec<Tile> {
    let (width, height) = (r.width() as u32, r.height() as u32);
    if width == 0 || height == 0 || zoom.is_nan() || zoom <= 0.0 {
        return Vec::new();
    }
    let axis = |len: u32, max_in: u32| -> Vec<(u32, u32)> {
        let n = ((len as f32 * zoom) / max_in as f32).ceil().max(1.0) as u32;
        if n == 1 {
            return vec![(0, len)];
        }
        let size = (len.div_ceil(n) + OVERLAP).min(len);
        let step = (len - size) as f32 / (n - 1) as f32;
        (0..n)
            .map(|i| {
                let start = ((i as f32 * step).round() as u32).min(len - size);
                (start, size)
            })
            .collect()
    };
    let xs = axis(width, MAX_TILE_W);
    let ys = axis(height, MAX_TILE_H);
    let mut tiles = Vec::with_capacity(xs.len() * ys.len());
    for &(y0, h) in &ys {
        for &(x0, w) in &xs {
            tiles.push(Tile {
                x0: r.x0 as u32 + x0,
                y0: r.y0 as u32 + y0,
                w,
                h,
                in_w: ceil_to_multiple(((w as f32 * zoom).round() as u32).max(32), 32),
                in_h: ceil_to_multiple(((h as f32 * zoom).round() as u32).max(32), 32),
            });
        }
    }
    tiles
}

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
fn changed_blocks(prev: &[u8], cur: &[u8], stride: usize, width: u32, height: u32) -> Vec<bool> {
    let b = CHANGE_BLOCK as usize;
    let (w, h) = (width as usize, height as usize);
    let (bw, bh) = (w.div_ceil(b), h.div_ceil(b));
    let mut sums = vec![0u32; bw * bh];
    for row in 0..h {
        let (p, c) = (
            &prev[row * w..row * w + w],
            &cur[row * stride..row * stride + w],
        );
        let sums_row = &mut sums[(row / b) * bw..(row / b + 1) * bw];
        for (bx, (pc, cc)) in p.chunks(b).zip(c.chunks(b)).enumerate() {
            sums_row[bx] += pc
                .iter()
                .zip(cc)
                .map(|(&a, &c)| u32::from(a.abs_diff(c)))
                .sum::<u32>();
        }
    }
    sums.iter()
        .enumerate()
        .map(|(i, &s)| {
            let (bx, by) = (i % bw, i / bw);
            let n = ((w - bx * b).min(b) * (h - by * b).min(b)) as u32;
            s > CHANGE_THRESHOLD * n
        })
        .collect()
}

/// What changed between two sweeps: the changed blocks, and the regions the zoom pass must look
/// at again (the changed blocks' neighbourhoods grown by `pad` pixels, overlapping ones merged).
#[derive(Debug, Clone)]
pub struct ChangeSet {
    changed: Vec<bool>,
    bw: usize,
    bh: usize,
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
        let b = CHANGE_BLOCK;
        let (w, h) = (width as usize, height as usize);
        let (bw, bh) = (width.div_ceil(b) as usize, height.div_ceil(b) as usize);
        if w == 0 || h == 0 || prev.len() != w * h || stride < w || cur.len() < stride * (h - 1) + w
        {
            return None;
        }
        let changed = changed_blocks(prev, cur, stride, width, height);
        let n = changed.iter().filter(|&&c| c).count();
        if n as f32 > MAX_CHANGED_SHARE * changed.len() as f32 {
            return None;
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
        let mut merged = true;
        while merged {
            merged = false;
            let mut out: Vec<Rect> = Vec::with_capacity(regions.len());
            for r in regions {
                match out
                    .iter_mut()
                    .find(|o| o.overlaps(&r) && o.union(&r).area() <= o.area() + r.area())
                {
                    Some(o) => {
                        *o = o.union(&r);
                        merged = true;
                    }
                    None => out.push(r),
                }
            }
            regions = out;
        }
        Some(ChangeSet {
            changed,
            bw,
            bh,
            regions,
        })
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

/// Read-only I420 planes of a frame.
pub struct I420<'a> {
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub strides: [usize; 3],
    pub width: u32,
    pub height: u32,
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
        .for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(vy, vu, vv), (oy, ((r_row, g_row), b_row))| {
                blend_rows(frame.y, frame.strides[0], ys[oy], ylo, yhi, vy);
                blend_rows(frame.u, frame.strides[1], cys[oy], clo, chi, vu);
                blend_rows(frame.v, frame.strides[2], cys[oy], clo, chi, vv);
                for ox in 0..ow {
                    let l = sample(vy, xs[ox], ylo);
                    let u = sample(vu, cxs[ox], clo);
                    let v = sample(vv, cxs[ox], clo);
                    let (r, g, b) = yuv_to_rgb(l, u, v);
                    r_row[ox] = f32::from(r);
                    g_row[ox] = f32::from(g);
                    b_row[ox] = f32::from(b);
                }
            },
        );
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

/// Samples a blended row (starting at source column `lo`) between `x.0` and `x.1`.
#[inline]
fn sample(row: &[u32], x: (usize, usize, u32), lo: usize) -> i32 {
    let v = row[x.0 - lo] * (256 - x.2) + row[x.1 - lo] * x.2;
    ((v + (1 << 15)) >> 16) as i32
}

/// BT.601 limited range to full-range RGB, integer arithmetic (coefficients x 256).
#[inline]
fn yuv_to_rgb(y: i32, u: i32, v: i32) -> (u8, u8, u8) {
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
        let t = layout(1280, 720, 2.0);
        assert_eq!(t.len(), 4);
        assert!(
            t.iter()
                .all(|t| t.in_w <= MAX_TILE_W + 96 && t.in_h <= MAX_TILE_H + 96)
        );
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
        // Tiles over the regions stay inside the frame and cover them.
        for r in &c.regions {
            let tiles = layout_in(*r, 2.0);
            assert!(!tiles.is_empty());
            for t in &tiles {
                let (x0, y0) = (t.x0 as usize, t.y0 as usize);
                let (x1, y1) = (x0 + t.w as usize, y0 + t.h as usize);
                assert!(x0 >= r.x0 && x1 <= r.x1 && y0 >= r.y0 && y1 <= r.y1);
            }
        }
    }

    #[test]
    fn a_pan_sweeps_the_whole_frame() {
        let (w, h) = (320usize, 240usize);
        let a: Vec<u8> = (0..w * h).map(|i| (i % w) as u8).collect();
        let b: Vec<u8> = (0..w * h).map(|i| ((i % w) + 40) as u8).collect();
        assert!(ChangeSet::between(&a, &b, w, 320, 240, 56).is_none());
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
        #[test]
        fn tiles_cover_every_pixel_and_stay_inside(w in 1u32..4000, h in 1u32..2500, z in 0.5f32..3.0) {
            let tiles = layout(w, h, z);
            prop_assert!(!tiles.is_empty());
            for t in &tiles {
                prop_assert!(t.x0 + t.w <= w && t.y0 + t.h <= h);
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
