//! Video redaction on I420 planes, in place.
//!
//! Owns: the pixel operations of each style on a Y, U or V plane. Regions come in as final
//! boxes in full-frame pixels (margin already applied); each plane maps them to its own
//! subsampled rectangle. Must not touch: detection, tracking, GStreamer buffers (the caller
//! maps the frame and hands over plain plane slices).
//!
//! Strength: `blur` is three passes of a box blur whose radius is the region's longer side,
//! then the remaining shading is pulled to a quarter of its contrast around the region's mean
//! — the result keeps only the region's average colour and a faint gradient, and cannot be
//! inverted (8-bit rounding after a filter that removes all detail). Both amounts are
//! settings (`redact.blur_radius`, `redact.blur_contrast`) for a softer look. `pixelate` averages at most
//! `blocks x blocks` cells (a fine mosaic keeps a face's layout; weaker than blur). `fill`
//! paints black. `ellipse` is `blur` inside an ellipse that passes through the region's
//! corners (so it covers everything `blur` covers, with rounded edges outside it).

use serde::{Deserialize, Serialize};

use crate::geom::{BoxF, Rect};

/// How faces are redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// Strong box blur (default).
    #[default]
    Blur,
    /// Mosaic of at most 8x8 cells (weaker: keeps the layout).
    Pixelate,
    /// Solid black.
    Fill,
    /// Strong blur inside an ellipse that covers the face box.
    Ellipse,
    /// No pixel changes; only the sidecar records the faces.
    Tag,
}

impl Style {
    pub fn name(&self) -> &'static str {
        match self {
            Style::Blur => "blur",
            Style::Pixelate => "pixelate",
            Style::Fill => "fill",
            Style::Ellipse => "ellipse",
            Style::Tag => "tag",
        }
    }
    /// Whether this style changes pixels.
    pub fn modifies_pixels(&self) -> bool {
        !matches!(self, Style::Tag)
    }
}

/// Style parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StyleParams {
    /// Blur radius as a fraction of the region's longer side.
    pub blur_radius_frac: f32,
    /// Number of box-blur passes (3 approximates a Gaussian).
    pub blur_passes: u32,
    /// Contrast kept after blurring, 0..1 (1 = plain blur).
    pub blur_contrast: f32,
    /// Pixelate: cells along the region's longer side.
    pub pixelate_blocks: u32,
}

impl Default for StyleParams {
    fn default() -> Self {
        StyleParams {
            blur_radius_frac: 1.0,
            blur_passes: 3,
            blur_contrast: 0.25,
            pixelate_blocks: 8,
        }
    }
}

/// The region redacted for a face box: the box grown by `margin` of its size plus `margin_px`
/// pixels on every side. The fixed part matters for small faces, whose detector boxes are
/// least precise relative to their size.
pub fn redaction_region(b: &BoxF, margin: f32, margin_px: f32) -> BoxF {
    let dx = b.w * margin + margin_px;
    let dy = b.h * margin + margin_px;
    BoxF::new(b.x - dx, b.y - dy, b.w + 2.0 * dx, b.h + 2.0 * dy)
}

/// One plane of an image: 8-bit samples, `stride` bytes per row.
pub struct PlaneMut<'a> {
    pub data: &'a mut [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
    /// Subsampling of this plane relative to the frame (1 for luma, 2 for I420 chroma).
    pub sub: usize,
    /// The value `fill` paints (16 for luma, 128 for chroma: black).
    pub fill_value: u8,
}

/// Redacts `regions` (full-frame pixels) on every plane. Planes are processed in parallel.
pub fn redact_planes(
    planes: &mut [PlaneMut<'_>],
    regions: &[BoxF],
    style: Style,
    params: &StyleParams,
) {
    if !style.modifies_pixels() || regions.is_empty() {
        return;
    }
    rayon::scope(|s| {
        for plane in planes.iter_mut() {
            s.spawn(move |_| {
                SCRATCH.with_borrow_mut(|scratch| {
                    let (fw, fh) = (
                        (plane.width * plane.sub) as f32,
                        (plane.height * plane.sub) as f32,
                    );
                    for r in regions {
                        let r = if style == Style::Ellipse {
                            ellipse_square(r, fw, fh)
                        } else {
                            *r
                        };
                        if let Some(rect) =
                            r.to_plane_rect(plane.width, plane.height, plane.sub, plane.sub)
                        {
                            redact_rect(plane, rect, style, params, scratch);
                        }
                    }
                })
            });
        }
    });
}

thread_local! {
    /// Each worker's buffers, kept from frame to frame (regions of a camera's faces change
    /// little in size, so after the first frames nothing is allocated). `redact_rect` starts
    /// no parallel work, so a worker never borrows its scratch twice.
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The rectangle whose inscribed ellipse passes through the corners of `r` (grown by sqrt 2
/// about its centre), clipped to the frame: the ellipse then covers all of `r`.
fn ellipse_square(r: &BoxF, fw: f32, fh: f32) -> BoxF {
    let (cx, cy) = r.center();
    let (w, h) = (
        r.w * std::f32::consts::SQRT_2,
        r.h * std::f32::consts::SQRT_2,
    );
    BoxF::new(cx - w / 2.0, cy - h / 2.0, w, h).clip(fw, fh)
}

#[derive(Default)]
struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
    small: Vec<u8>,
    sums: Vec<u32>,
    xtaps: Vec<(u32, u32, u32)>,
    ytaps: Vec<(u32, u32, u32)>,
    /// The small image widened to the region's width (8.8 fixed point), one row per small row.
    wide: Vec<u16>,
}

fn redact_rect(p: &mut PlaneMut<'_>, r: Rect, style: Style, params: &StyleParams, s: &mut Scratch) {
    match style {
        Style::Tag => {}
        Style::Fill => {
            for y in r.y0..r.y1 {
                p.data[y * p.stride + r.x0..y * p.stride + r.x1].fill(p.fill_value);
            }
        }
        Style::Pixelate => pixelate(p, r, params.pixelate_blocks.max(1) as usize),
        Style::Blur | Style::Ellipse => {
            let (w, h) = (r.width(), r.height());
            let radius = ((w.max(h) as f32) * params.blur_radius_frac)
                .round()
                .max(1.0) as usize;
            let ellipse = style == Style::Ellipse;
            let passes = params.blur_passes.max(1);
            // A wide blur is computed at reduced resolution, straight from and into the
            // plane; a narrow one (tiny regions, chroma of small faces) at full resolution.
            let f = (radius / 4).clamp(1, w.min(h).max(1));
            if f > 1 {
                blur_reduced(p, r, f, radius, passes, params.blur_contrast, ellipse, s);
                return;
            }
            copy_out(p, r, &mut s.a);
            blur_region(&mut s.a, &mut s.b, &mut s.sums, w, h, radius, passes);
            reduce_contrast(&mut s.a, params.blur_contrast);
            if ellipse {
                copy_in_ellipse(p, r, &s.a);
            } else {
                copy_in(p, r, &s.a);
            }
        }
    }
}

/// The columns `[x0, x1)` of row `row` (of `h`) inside the ellipse inscribed in a `w x h`
/// region; empty when the row lies outside it.
fn ellipse_span(row: usize, w: usize, h: usize) -> (usize, usize) {
    let (a, b) = (w as f32 / 2.0, h as f32 / 2.0);
    let dy = (row as f32 + 0.5 - b) / b;
    let rem = 1.0 - dy * dy;
    if rem < 0.0 {
        return (0, 0);
    }
    let half = a * rem.sqrt();
    let x0 = ((a - half).floor().max(0.0)) as usize;
    let x1 = ((a + half).ceil().min(w as f32)) as usize;
    (x0, x1.max(x0))
}

/// A wide blur at reduced resolution, read from and written to the plane directly: the
/// region is area-averaged down by `f` (the radius becomes about 4 samples), blurred there,
/// pulled towards its mean (`contrast`), and scaled back up bilinearly into the plane (only
/// inside the ellipse when `ellipse`). For the radii used here (a third of the region or
/// more) the result is visually the same as blurring at full resolution; every full-size
/// pass is a plain row loop (column sums going down, two blended rows going up).
///
/// On x86-64 CPUs with AVX2 the same code runs compiled for AVX2 (chosen at run time; the
/// binary itself targets baseline x86-64): its full-size row loops then take 16-32 samples
/// at a time instead of 8-16.
#[allow(clippy::too_many_arguments)]
fn blur_reduced(
    p: &mut PlaneMut<'_>,
    r: Rect,
    f: usize,
    radius: usize,
    passes: u32,
    contrast: f32,
    ellipse: bool,
    s: &mut Scratch,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { blur_reduced_avx2(p, r, f, radius, passes, contrast, ellipse, s) };
        return;
    }
    blur_reduced_body(p, r, f, radius, passes, contrast, ellipse, s);
}

/// [`blur_reduced`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
fn blur_reduced_avx2(
    p: &mut PlaneMut<'_>,
    r: Rect,
    f: usize,
    radius: usize,
    passes: u32,
    contrast: f32,
    ellipse: bool,
    s: &mut Scratch,
) {
    blur_reduced_body(p, r, f, radius, passes, contrast, ellipse, s);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn blur_reduced_body(
    p: &mut PlaneMut<'_>,
    r: Rect,
    f: usize,
    radius: usize,
    passes: u32,
    contrast: f32,
    ellipse: bool,
    s: &mut Scratch,
) {
    let (w, h) = (r.width(), r.height());
    let (sw, sh) = (w.div_ceil(f), h.div_ceil(f));
    // Area-average down: column sums over each band of `f` rows, then `f` columns at once.
    s.small.clear();
    s.small.resize(sw * sh, 0);
    s.sums.clear();
    s.sums.resize(w, 0);
    for sy in 0..sh {
        let (y0, y1) = (sy * f, ((sy + 1) * f).min(h));
        s.sums.fill(0);
        for y in y0..y1 {
            let at = (r.y0 + y) * p.stride + r.x0;
            for (c, &v) in s.sums.iter_mut().zip(&p.data[at..at + w]) {
                *c += v as u32;
            }
        }
        for sx in 0..sw {
            let (x0, x1) = (sx * f, ((sx + 1) * f).min(w));
            let sum: u64 = s.sums[x0..x1].iter().map(|&c| u64::from(c)).sum();
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            let avg = (sum + n / 2) / n;
            s.small[sy * sw + sx] = avg as u8;
        }
    }
    blur_region(
        &mut s.small,
        &mut s.b,
        &mut s.sums,
        sw,
        sh,
        (radius / f).max(1),
        passes,
    );
    // The contrast step is linear, so it is the same on the small image as on the scaled-up
    // one; its mean is the region's (each cell weighted by the pixels it covers).
    if contrast < 1.0 {
        let mut cells = 0u64;
        let mut weighted = 0u64;
        for sy in 0..sh {
            let rows = (((sy + 1) * f).min(h) - sy * f) as u64;
            for sx in 0..sw {
                let cols = (((sx + 1) * f).min(w) - sx * f) as u64;
                weighted += u64::from(s.small[sy * sw + sx]) * rows * cols;
                cells += rows * cols;
            }
        }
        pull_to_mean(
            &mut s.small,
            ((weighted + cells / 2) / cells) as i64,
            contrast,
        );
    }
    // Bilinear back up into the plane, in 8.8 fixed point. Separable and exact in integers,
    // so the order is free: each small row is widened to the region's width once (per-column
    // taps: the only gathers, `sh` rows of them), then every output row is a blend of two
    // widened rows (a plain loop the compiler vectorises). The same integers as blending rows
    // first: the sum over the four taps of `small * wx * wy`, rounded once.
    let taps = |len: usize, slen: usize, out: &mut Vec<(u32, u32, u32)>| {
        out.clear();
        out.extend((0..len).map(|i| {
            // Source position (i + 0.5) / f - 0.5, in 1/256 units.
            let q = (((2 * i + 1) * 256) / (2 * f)) as i64 - 128;
            let q = q.clamp(0, (slen as i64 - 1) * 256) as usize;
            let (i0, frac) = (q / 256, (q % 256) as u32);
            (i0 as u32, (i0 + 1).min(slen - 1) as u32, frac)
        }));
    };
    taps(w, sw, &mut s.xtaps);
    taps(h, sh, &mut s.ytaps);
    s.wide.clear();
    s.wide.resize(sh * w, 0);
    for (src, dst) in s.small.chunks_exact(sw).zip(s.wide.chunks_exact_mut(w)) {
        for (d, &(a, b, wx)) in dst.iter_mut().zip(&s.xtaps) {
            // At most 255 * 256: fits 16 bits.
            *d = (src[a as usize] as u32 * (256 - wx) + src[b as usize] as u32 * wx) as u16;
        }
    }
    for (y, &(y0, y1, wy)) in s.ytaps.iter().enumerate() {
        let (x0, x1) = if ellipse {
            ellipse_span(y, w, h)
        } else {
            (0, w)
        };
        let (r0, r1) = (
            &s.wide[y0 as usize * w + x0..y0 as usize * w + x1],
            &s.wide[y1 as usize * w + x0..y1 as usize * w + x1],
        );
        let at = (r.y0 + y) * p.stride + r.x0;
        let out = &mut p.data[at + x0..at + x1];
        // Both weights fit 16 bits: written as 16 x 16 -> 32 bit products, which even the
        // baseline x86-64 target multiplies 8 at a time.
        let (wy0, wy1) = ((256 - wy) as u16, wy as u16);
        for ((o, &a), &b) in out.iter_mut().zip(r0).zip(r1) {
            let v = u32::from(a) * u32::from(wy0) + u32::from(b) * u32::from(wy1);
            *o = ((v + (1 << 15)) >> 16) as u8;
        }
    }
}

/// Pulls every sample towards the region's mean: `mean + k * (v - mean)`. With `k < 1` the
/// faint shading a very wide blur leaves behind fades further (and the encoder flattens it).
fn reduce_contrast(buf: &mut [u8], k: f32) {
    if k >= 1.0 || buf.is_empty() {
        return;
    }
    let n = buf.len() as i64;
    let mean = (buf.iter().map(|&v| v as i64).sum::<i64>() + n / 2) / n;
    pull_to_mean(buf, mean, k);
}

/// `mean + k * (v - mean)` for every sample, in 8.8 fixed point.
fn pull_to_mean(buf: &mut [u8], mean: i64, k: f32) {
    let k = (k.max(0.0) * 256.0) as i64;
    for v in buf.iter_mut() {
        *v = (mean + ((k * (*v as i64 - mean) + 128) >> 8)).clamp(0, 255) as u8;
    }
}

fn copy_out(p: &PlaneMut<'_>, r: Rect, buf: &mut Vec<u8>) {
    let w = r.width();
    buf.clear();
    buf.reserve(w * r.height());
    for y in r.y0..r.y1 {
        buf.extend_from_slice(&p.data[y * p.stride + r.x0..y * p.stride + r.x0 + w]);
    }
}

fn copy_in(p: &mut PlaneMut<'_>, r: Rect, buf: &[u8]) {
    let w = r.width();
    for (row, y) in (r.y0..r.y1).enumerate() {
        p.data[y * p.stride + r.x0..y * p.stride + r.x0 + w]
            .copy_from_slice(&buf[row * w..(row + 1) * w]);
    }
}

fn copy_in_ellipse(p: &mut PlaneMut<'_>, r: Rect, buf: &[u8]) {
    let (w, h) = (r.width(), r.height());
    for row in 0..h {
        let (x0, x1) = ellipse_span(row, w, h);
        let at = (r.y0 + row) * p.stride + r.x0;
        p.data[at + x0..at + x1].copy_from_slice(&buf[row * w + x0..row * w + x1]);
    }
}

/// Box blur with clamped edges, `passes` times horizontally and vertically, over a `w x h`
/// region stored contiguously in `buf`. Uses only the region's own pixels.
fn blur_region(
    buf: &mut [u8],
    tmp: &mut Vec<u8>,
    sums: &mut Vec<u32>,
    w: usize,
    h: usize,
    r: usize,
    passes: u32,
) {
    tmp.resize(w * h, 0);
    for _ in 0..passes {
        for y in 0..h {
            blur_line_h(
                &buf[y * w..(y + 1) * w],
                &mut tmp[y * w..(y + 1) * w],
                r,
                sums,
            );
        }
        blur_v(tmp, buf, sums, w, h, r);
    }
}

/// Rounded division by a fixed window size as a multiply and shift (an integer division per
/// sample dominated the blur's cost).
#[derive(Clone, Copy)]
struct Divider {
    inv: u64,
}

impl Divider {
    fn new(win: usize) -> Self {
        Divider {
            inv: ((1u64 << 32) + win as u64 / 2) / win as u64,
        }
    }
    #[inline]
    fn apply(&self, sum: u32) -> u8 {
        ((sum as u64 * self.inv + (1 << 31)) >> 32).min(255) as u8
    }
}

/// One horizontal box-blur pass over a row, edges clamped: each output is the sum over the
/// window from a prefix sum, with the parts of the window beyond either edge counted as
/// copies of the edge sample (no per-sample clamping in the loop).
fn blur_line_h(src: &[u8], dst: &mut [u8], r: usize, prefix: &mut Vec<u32>) {
    let n = src.len();
    if n == 0 {
        return;
    }
    let div = Divider::new(2 * r + 1);
    prefix.clear();
    prefix.reserve(n + 1);
    prefix.push(0);
    let mut acc = 0u32;
    for &v in src {
        acc += v as u32;
        prefix.push(acc);
    }
    let (first, last) = (src[0] as u32, src[n - 1] as u32);
    let (r, ni) = (r as isize, n as isize);
    for (i, d) in dst.iter_mut().enumerate() {
        let (a, b) = (i as isize - r, i as isize + r);
        let below = (-a).max(0) as u32; // window positions left of the row
        let above = (b - (ni - 1)).max(0) as u32; // and right of it
        let lo = a.clamp(0, ni) as usize;
        let hi = (b + 1).clamp(0, ni) as usize;
        let inside = if hi > lo { prefix[hi] - prefix[lo] } else { 0 };
        *d = div.apply(inside + below * first + above * last);
    }
}

/// One vertical box-blur pass from `src` to `dst` (both `w x h`), edges clamped, rows in order
/// with running column sums (cache-friendly).
fn blur_v(src: &[u8], dst: &mut [u8], sums: &mut Vec<u32>, w: usize, h: usize, r: usize) {
    if h == 0 || w == 0 {
        return;
    }
    let div = Divider::new(2 * r + 1);
    let row = |y: isize| {
        let y = y.clamp(0, h as isize - 1) as usize;
        &src[y * w..(y + 1) * w]
    };
    sums.clear();
    sums.resize(w, 0);
    for y in -(r as isize)..=r as isize {
        for (s, &v) in sums.iter_mut().zip(row(y)) {
            *s += v as u32;
        }
    }
    for y in 0..h {
        let out = &mut dst[y * w..(y + 1) * w];
        for (o, &s) in out.iter_mut().zip(sums.iter()) {
            *o = div.apply(s);
        }
        let (add, sub) = (
            row(y as isize + r as isize + 1),
            row(y as isize - r as isize),
        );
        for ((s, &a), &b) in sums.iter_mut().zip(add).zip(sub) {
            *s = *s + a as u32 - b as u32;
        }
    }
}

fn pixelate(p: &mut PlaneMut<'_>, r: Rect, blocks: usize) {
    let (w, h) = (r.width(), r.height());
    let cell = w.max(h).div_ceil(blocks).max(1);
    let mut by = r.y0;
    while by < r.y1 {
        let ey = (by + cell).min(r.y1);
        let mut bx = r.x0;
        while bx < r.x1 {
            let ex = (bx + cell).min(r.x1);
            let mut sum: u64 = 0;
            for y in by..ey {
                sum += p.data[y * p.stride + bx..y * p.stride + ex]
                    .iter()
                    .map(|&v| v as u64)
                    .sum::<u64>();
            }
            let n = ((ey - by) * (ex - bx)) as u64;
            let avg = ((sum + n / 2) / n) as u8;
            for y in by..ey {
                p.data[y * p.stride + bx..y * p.stride + ex].fill(avg);
            }
            bx = ex;
        }
        by = ey;
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;

    /// A textured plane: a checkerboard of 2px cells plus a gradient, so that any smoothing or
    /// averaging is visible.
    fn textured(w: usize, h: usize) -> Vec<u8> {
        (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let check = if (x / 2 + y / 2) % 2 == 0 { 60 } else { 0 };
                (40 + check + (x + y) % 50) as u8
            })
            .collect()
    }

    fn plane(data: &mut [u8], w: usize, h: usize) -> PlaneMut<'_> {
        PlaneMut {
            data,
            stride: w,
            width: w,
            height: h,
            sub: 1,
            fill_value: 16,
        }
    }

    fn variance(v: impl Iterator<Item = u8> + Clone) -> f64 {
        let n = v.clone().count() as f64;
        let m = v.clone().map(|x| x as f64).sum::<f64>() / n;
        v.map(|x| (x as f64 - m).powi(2)).sum::<f64>() / n
    }

    fn region_pixels(d: &[u8], w: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Vec<u8> {
        (y0..y1)
            .flat_map(|y| d[y * w + x0..y * w + x1].to_vec())
            .collect()
    }

    fn apply(style: Style) -> (Vec<u8>, Vec<u8>) {
        let (w, h) = (64, 48);
        let orig = textured(w, h);
        let mut d = orig.clone();
        let mut p = [plane(&mut d, w, h)];
        redact_planes(
            &mut p,
            &[BoxF::new(10.0, 8.0, 30.0, 24.0)],
            style,
            &StyleParams::default(),
        );
        (orig, d)
    }

    #[test]
    fn outside_the_region_nothing_changes_for_any_style() {
        // (The ellipse reaches beyond its rectangle by design; see its own test.)
        for style in [Style::Blur, Style::Pixelate, Style::Fill, Style::Tag] {
            let (orig, d) = apply(style);
            for y in 0..48 {
                for x in 0..64 {
                    let inside = (10..40).contains(&x) && (8..32).contains(&y);
                    if !inside {
                        assert_eq!(
                            orig[y * 64 + x],
                            d[y * 64 + x],
                            "{style:?} changed ({x},{y})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn blur_removes_nearly_all_texture_inside() {
        let (orig, d) = apply(Style::Blur);
        let before = variance(region_pixels(&orig, 64, 10, 8, 40, 32).into_iter());
        let after = variance(region_pixels(&d, 64, 10, 8, 40, 32).into_iter());
        assert!(after < before * 0.05, "variance {before} -> {after}");
    }

    #[test]
    fn pixelate_makes_uniform_cells_of_at_most_8_per_side() {
        let (_, d) = apply(Style::Pixelate);
        let region = region_pixels(&d, 64, 10, 8, 40, 32);
        let distinct: std::collections::HashSet<u8> = region.iter().copied().collect();
        assert!(distinct.len() <= 64, "{} distinct values", distinct.len());
        // Cell size is ceil(30/8) = 4: the first 4x4 block is uniform.
        let first = d[8 * 64 + 10];
        for y in 8..12 {
            for x in 10..14 {
                assert_eq!(d[y * 64 + x], first);
            }
        }
    }

    #[test]
    fn fill_paints_the_fill_value() {
        let (_, d) = apply(Style::Fill);
        assert!(
            region_pixels(&d, 64, 10, 8, 40, 32)
                .iter()
                .all(|&v| v == 16)
        );
    }

    #[test]
    fn ellipse_covers_the_box_and_rounds_off_outside_it() {
        let (w, h) = (64, 48);
        let orig = textured(w, h);
        let mut d = orig.clone();
        let mut p = [plane(&mut d, w, h)];
        // A box in the middle: the grown ellipse (about 23x17 px) stays inside the frame.
        let b = BoxF::new(24.0, 16.0, 16.0, 12.0);
        redact_planes(&mut p, &[b], Style::Ellipse, &StyleParams::default());
        // The corners of the grown rectangle are outside the ellipse and stay...
        assert_eq!(
            orig[13 * 64 + 21],
            d[13 * 64 + 21],
            "outer corner must stay"
        );
        // ...while every pixel of the box itself is blurred.
        let before = variance(region_pixels(&orig, 64, 24, 16, 40, 28).into_iter());
        let after = variance(region_pixels(&d, 64, 24, 16, 40, 28).into_iter());
        assert!(after < before * 0.1, "{before} -> {after}");
        // Box corners included.
        assert_ne!(orig[16 * 64 + 24], d[16 * 64 + 24]);
        // Far outside the ellipse nothing changes.
        assert_eq!(orig[2 * 64 + 2], d[2 * 64 + 2]);
    }

    #[test]
    fn tag_changes_nothing() {
        let (orig, d) = apply(Style::Tag);
        assert_eq!(orig, d);
    }

    #[test]
    fn regions_at_the_frame_border_and_on_subsampled_planes_stay_in_bounds() {
        let (w, h) = (33, 17); // odd sizes
        let mut y = textured(w, h);
        let mut u = textured(w.div_ceil(2), h.div_ceil(2));
        let orig_u = u.clone();
        let mut planes = [
            plane(&mut y, w, h),
            PlaneMut {
                data: &mut u,
                stride: w.div_ceil(2),
                width: w.div_ceil(2),
                height: h.div_ceil(2),
                sub: 2,
                fill_value: 128,
            },
        ];
        let regions = [
            BoxF::new(-10.0, -10.0, 25.0, 20.0),
            BoxF::new(30.0, 10.0, 40.0, 40.0),
        ];
        for style in [Style::Blur, Style::Pixelate, Style::Fill, Style::Ellipse] {
            redact_planes(&mut planes, &regions, style, &StyleParams::default());
        }
        assert_ne!(orig_u, u);
    }

    #[test]
    fn prefix_blur_matches_a_direct_clamped_window_sum() {
        let src: Vec<u8> = (0..23).map(|i| (i * 37 % 251) as u8).collect();
        for r in [0usize, 1, 3, 10, 22, 40] {
            let mut got = vec![0u8; src.len()];
            blur_line_h(&src, &mut got, r, &mut Vec::new());
            for i in 0..src.len() {
                let sum: u32 = (i as isize - r as isize..=i as isize + r as isize)
                    .map(|j| src[j.clamp(0, src.len() as isize - 1) as usize] as u32)
                    .sum();
                let win = 2 * r as u32 + 1;
                let want = ((sum + win / 2) / win) as u8;
                assert!(
                    got[i].abs_diff(want) <= 1,
                    "r {r} i {i}: {} vs {want}",
                    got[i]
                );
            }
        }
    }

    #[test]
    fn divider_rounds_like_integer_division() {
        for win in [1usize, 3, 7, 31, 201, 1001] {
            let d = Divider::new(win);
            for sum in (0..=(255 * win as u32)).step_by(37) {
                let want = ((sum + win as u32 / 2) / win as u32) as u8;
                assert!(d.apply(sum).abs_diff(want) <= 1, "win {win} sum {sum}");
            }
        }
    }

    #[test]
    fn box_blur_of_a_constant_is_the_constant() {
        let mut buf = vec![77u8; 20 * 10];
        let (mut tmp, mut sums) = (Vec::new(), Vec::new());
        blur_region(&mut buf, &mut tmp, &mut sums, 20, 10, 7, 3);
        assert!(buf.iter().all(|&v| v == 77));
    }

    #[test]
    fn blur_radius_larger_than_region_is_safe() {
        let mut buf: Vec<u8> = (0..6).map(|i| i * 40).collect();
        let (mut tmp, mut sums) = (Vec::new(), Vec::new());
        blur_region(&mut buf, &mut tmp, &mut sums, 3, 2, 50, 3);
        assert!(buf.iter().all(|&v| v > 0 && v < 200));
    }

    /// The reduced-resolution blur as it was written before it worked on the plane directly:
    /// region copied out, area-averaged down, blurred, scaled up with the four-sample
    /// bilinear formula, pulled to its mean, copied back.
    fn blur_by_copies(
        d: &mut [u8],
        stride: usize,
        r: Rect,
        f: usize,
        radius: usize,
        contrast: f32,
    ) {
        let (w, h) = (r.width(), r.height());
        let mut a: Vec<u8> = (r.y0..r.y1)
            .flat_map(|y| d[y * stride + r.x0..y * stride + r.x1].to_vec())
            .collect();
        let (sw, sh) = (w.div_ceil(f), h.div_ceil(f));
        let mut small = vec![0u8; sw * sh];
        for sy in 0..sh {
            for sx in 0..sw {
                let (y0, y1, x0, x1) =
                    (sy * f, ((sy + 1) * f).min(h), sx * f, ((sx + 1) * f).min(w));
                let sum: u32 = (y0..y1)
                    .flat_map(|y| a[y * w + x0..y * w + x1].to_vec())
                    .map(u32::from)
                    .sum();
                let n = ((y1 - y0) * (x1 - x0)) as u32;
                small[sy * sw + sx] = ((sum + n / 2) / n) as u8;
            }
        }
        let (mut tmp, mut sums) = (Vec::new(), Vec::new());
        blur_region(
            &mut small,
            &mut tmp,
            &mut sums,
            sw,
            sh,
            (radius / f).max(1),
            3,
        );
        let pos = |i: usize, slen: usize| {
            let q = ((((2 * i + 1) * 256) / (2 * f)) as i64 - 128).clamp(0, (slen as i64 - 1) * 256)
                as usize;
            (q / 256, (q / 256 + 1).min(slen - 1), (q % 256) as u32)
        };
        for y in 0..h {
            let (y0, y1, wy) = pos(y, sh);
            for x in 0..w {
                let (x0, x1, wx) = pos(x, sw);
                let s = |yy: usize, xx: usize| small[yy * sw + xx] as u32;
                let top = s(y0, x0) * (256 - wx) + s(y0, x1) * wx;
                let bot = s(y1, x0) * (256 - wx) + s(y1, x1) * wx;
                a[y * w + x] = ((top * (256 - wy) + bot * wy + (1 << 15)) >> 16) as u8;
            }
        }
        reduce_contrast(&mut a, contrast);
        for (row, y) in (r.y0..r.y1).enumerate() {
            d[y * stride + r.x0..y * stride + r.x1].copy_from_slice(&a[row * w..(row + 1) * w]);
        }
    }

    #[test]
    fn blur_on_the_plane_matches_the_blur_by_copies() {
        // Texture over a steep ramp: the blur leaves a gradient for the contrast step to act on.
        let (w, h) = (200, 160);
        let orig: Vec<u8> = textured(w, h)
            .iter()
            .enumerate()
            .map(|(i, &t)| (t / 2).saturating_add(((i % w) * 255 / w) as u8 / 2))
            .collect();
        for (x0, y0, x1, y1) in [
            (10, 20, 130, 158),
            (0, 0, 37, 41),
            (150, 100, 200, 160),
            (5, 7, 29, 19),
        ] {
            for (frac, contrast) in [(1.0f32, 0.25f32), (0.4, 0.25), (1.0, 1.0), (0.4, 1.0)] {
                let r = Rect { x0, y0, x1, y1 };
                let radius = (r.width().max(r.height()) as f32 * frac).round() as usize;
                let f = (radius / 4).clamp(1, r.width().min(r.height()));
                assert!(f > 1);
                let mut want = orig.clone();
                blur_by_copies(&mut want, w, r, f, radius, contrast);
                let mut got = orig.clone();
                let params = StyleParams {
                    blur_radius_frac: frac,
                    blur_contrast: contrast,
                    ..StyleParams::default()
                };
                redact_rect(
                    &mut plane(&mut got, w, h),
                    r,
                    Style::Blur,
                    &params,
                    &mut Scratch::default(),
                );
                let worst = want
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| a.abs_diff(*b))
                    .max()
                    .unwrap();
                // Only the contrast step's mean may differ (taken before instead of after
                // the scaling up) and its rounding: by a level. Without it, the scaling up
                // (widened rows, then blended) gives exactly the four-sample formula's values.
                let allowed = if contrast < 1.0 { 1 } else { 0 };
                assert!(
                    worst <= allowed,
                    "{r:?} at {frac}, contrast {contrast}: off by {worst}"
                );
                let outside = (0..w * h)
                    .filter(|&i| !(x0..x1).contains(&(i % w)) || !(y0..y1).contains(&(i / w)));
                assert!(outside.clone().all(|i| got[i] == orig[i]));
            }
        }
    }

    #[test]
    fn the_avx2_build_and_the_portable_build_blur_alike() {
        // `blur_reduced` picks the AVX2 build where the CPU has it: the portable body must
        // leave exactly the same pixels (it is all integer arithmetic).
        let (w, h) = (301, 203);
        let orig = textured(w, h);
        for (r, f, ellipse) in [
            (
                Rect {
                    x0: 3,
                    y0: 5,
                    x1: 290,
                    y1: 200,
                },
                70,
                false,
            ),
            (
                Rect {
                    x0: 0,
                    y0: 0,
                    x1: 33,
                    y1: 47,
                },
                11,
                true,
            ),
            (
                Rect {
                    x0: 100,
                    y0: 50,
                    x1: 117,
                    y1: 61,
                },
                2,
                false,
            ),
        ] {
            let radius = 4 * f;
            let (mut a, mut b) = (orig.clone(), orig.clone());
            blur_reduced(
                &mut plane(&mut a, w, h),
                r,
                f,
                radius,
                3,
                0.25,
                ellipse,
                &mut Scratch::default(),
            );
            blur_reduced_body(
                &mut plane(&mut b, w, h),
                r,
                f,
                radius,
                3,
                0.25,
                ellipse,
                &mut Scratch::default(),
            );
            assert!(a == b, "{r:?}");
            assert!(a != orig, "{r:?}: nothing was blurred");
        }
    }
}
