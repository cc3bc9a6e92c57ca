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
use crate::geom::ceil_to_multiple;

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
                x0,
                y0,
                w,
                h,
                in_w: ceil_to_multiple(((w as f32 * zoom).round() as u32).max(32), 32),
                in_h: ceil_to_multiple(((h as f32 * zoom).round() as u32).max(32), 32),
            });
        }
    }
    tiles
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

#[inline]
fn lerp2(p: &[u8], stride: usize, x: (usize, usize, u32), y: (usize, usize, u32)) -> i32 {
    let r0 = &p[y.0 * stride..];
    let r1 = &p[y.1 * stride..];
    let top = r0[x.0] as u32 * (256 - x.2) + r0[x.1] as u32 * x.2;
    let bot = r1[x.0] as u32 * (256 - x.2) + r1[x.1] as u32 * x.2;
    ((top * (256 - y.2) + bot * y.2 + (1 << 15)) >> 16) as i32
}

/// Renders `tile` of the frame into a packed 3-channel image of `tile.in_w x tile.in_h`
/// (bilinear sampling in 8.8 fixed point, BT.601 limited-range YUV → RGB), in `order`.
pub fn render(frame: &I420<'_>, tile: &Tile, order: ChannelOrder) -> Vec<u8> {
    let (ow, oh) = (tile.in_w as usize, tile.in_h as usize);
    let mut out = vec![0u8; ow * oh * 3];
    let (sx, sy) = tile.back_scale();
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    let (cw, ch) = (fw.div_ceil(2), fh.div_ceil(2));
    if fw == 0 || fh == 0 {
        return out;
    }
    let xs = axis_taps(ow, tile.x0, sx, fw, false);
    let cxs = axis_taps(ow, tile.x0, sx, cw, true);
    let ys = axis_taps(oh, tile.y0, sy, fh, false);
    let cys = axis_taps(oh, tile.y0, sy, ch, true);
    let (ri, bi) = match order {
        ChannelOrder::Bgr => (2, 0),
        ChannelOrder::Rgb => (0, 2),
    };
    out.par_chunks_mut(ow * 3)
        .enumerate()
        .for_each(|(oy, row)| {
            let (y, cy) = (ys[oy], cys[oy]);
            for ox in 0..ow {
                let l = lerp2(frame.y, frame.strides[0], xs[ox], y);
                let u = lerp2(frame.u, frame.strides[1], cxs[ox], cy);
                let v = lerp2(frame.v, frame.strides[2], cxs[ox], cy);
                let (r, g, b) = yuv_to_rgb(l, u, v);
                let px = &mut row[ox * 3..ox * 3 + 3];
                px[ri] = r;
                px[1] = g;
                px[bi] = b;
            }
        });
    out
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
        let rgb = render(&f, &tile, ChannelOrder::Rgb);
        let bgr = render(&f, &tile, ChannelOrder::Bgr);
        assert!(rgb[0] > 200 && rgb[2] < 150, "{:?}", &rgb[..3]);
        assert_eq!(rgb[0], bgr[2]);
        assert_eq!(rgb[2], bgr[0]);
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
