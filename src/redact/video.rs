//! Video redaction on I420 planes, in place.
//!
//! Owns: the pixel operations of each style on a Y, U or V plane. Regions come in as final
//! boxes in full-frame pixels (margin already applied); each plane maps them to its own
//! subsampled rectangle. Must not touch: detection, tracking, GStreamer buffers (the caller
//! maps the frame and hands over plain plane slices).
//!
//! Strength: `blur` is three passes of a box blur whose radius is a third of the region's
//! longer side — the result keeps only the coarse colour of the region and cannot be inverted
//! (8-bit rounding after a filter that removes nearly all detail). `pixelate` averages at most
//! `blocks x blocks` cells (a fine mosaic keeps a face's layout; weaker than blur). `fill`
//! paints black. `ellipse` is `blur` restricted to the ellipse inscribed in the region.

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
    /// Strong blur inside the inscribed ellipse.
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
    /// Pixelate: cells along the region's longer side.
    pub pixelate_blocks: u32,
}

impl Default for StyleParams {
    fn default() -> Self {
        StyleParams {
            blur_radius_frac: 1.0 / 3.0,
            blur_passes: 3,
            pixelate_blocks: 8,
        }
    }
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
                let mut scratch = Scratch::default();
                for r in regions {
                    if let Some(rect) =
                        r.to_plane_rect(plane.width, plane.height, plane.sub, plane.sub)
                    {
                        redact_rect(plane, rect, style, params, &mut scratch);
                    }
                }
            });
        }
    });
}

#[derive(Default)]
struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
    sums: Vec<u32>,
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
            copy_out(p, r, &mut s.a);
            blur_region(
                &mut s.a,
                &mut s.b,
                &mut s.sums,
                w,
                h,
                radius,
                params.blur_passes.max(1),
            );
            if style == Style::Blur {
                copy_in(p, r, &s.a);
            } else {
                copy_in_ellipse(p, r, &s.a);
            }
        }
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
    let (a, b) = (w as f32 / 2.0, h as f32 / 2.0);
    for row in 0..h {
        let dy = (row as f32 + 0.5 - b) / b;
        let rem = 1.0 - dy * dy;
        if rem < 0.0 {
            continue;
        }
        let half = a * rem.sqrt();
        let x0 = ((a - half).floor().max(0.0)) as usize;
        let x1 = ((a + half).ceil().min(w as f32)) as usize;
        let y = r.y0 + row;
        let dst = &mut p.data[y * p.stride + r.x0 + x0..y * p.stride + r.x0 + x1];
        dst.copy_from_slice(&buf[row * w + x0..row * w + x1]);
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
            blur_line_h(&buf[y * w..(y + 1) * w], &mut tmp[y * w..(y + 1) * w], r);
        }
        blur_v(tmp, buf, sums, w, h, r);
    }
}

/// One horizontal box-blur pass over a row, edges clamped.
fn blur_line_h(src: &[u8], dst: &mut [u8], r: usize) {
    let n = src.len();
    if n == 0 {
        return;
    }
    let win = (2 * r + 1) as u32;
    let at = |i: isize| src[i.clamp(0, n as isize - 1) as usize] as u32;
    let mut sum: u32 = (-(r as isize)..=r as isize).map(at).sum();
    for (i, d) in dst.iter_mut().enumerate() {
        *d = ((sum + win / 2) / win) as u8;
        let i = i as isize;
        sum = sum + at(i + r as isize + 1) - at(i - r as isize);
    }
}

/// One vertical box-blur pass from `src` to `dst` (both `w x h`), edges clamped, rows in order
/// with running column sums (cache-friendly).
fn blur_v(src: &[u8], dst: &mut [u8], sums: &mut Vec<u32>, w: usize, h: usize, r: usize) {
    if h == 0 || w == 0 {
        return;
    }
    let win = (2 * r + 1) as u32;
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
            *o = ((s + win / 2) / win) as u8;
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
        for style in [
            Style::Blur,
            Style::Pixelate,
            Style::Fill,
            Style::Ellipse,
            Style::Tag,
        ] {
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
    fn ellipse_changes_the_centre_but_not_the_corners() {
        let (orig, d) = apply(Style::Ellipse);
        assert_eq!(
            orig[8 * 64 + 10],
            d[8 * 64 + 10],
            "top-left corner must stay"
        );
        assert_eq!(
            orig[31 * 64 + 39],
            d[31 * 64 + 39],
            "bottom-right corner must stay"
        );
        let before = variance(region_pixels(&orig, 64, 20, 15, 30, 25).into_iter());
        let after = variance(region_pixels(&d, 64, 20, 15, 30, 25).into_iter());
        assert!(after < before * 0.1);
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
}
