//! The main pass's input: the whole frame shrunk to the detector's input size, read straight
//! from the full-resolution I420 planes and written as the NCHW floats of the input tensor.
//!
//! Why here and not in GStreamer: the detector copy used to come from a `tee` branch
//! (`videoscale ! videoconvert` to packed BGR, then repacked to NCHW), which cost ~2.6 ms of
//! CPU per 720p frame it made (`perf`: its thread's samples) and a thread of its own; this
//! costs ~1 ms (`cargo bench`, `shrink`: 0.97 ms for 1280x720 → 576x320).
//!
//! Filter: an area (box) filter, each output pixel the mean of the source pixels its footprint
//! covers, fractional at the edges — a shrink by 2.2x aliases with plain bilinear taps, and an
//! aliased small face is a face the detector misses. Colour: BT.601 limited range to RGB, the
//! zoom pass's conversion. Chroma is sampled at the output size from the half-size planes
//! (their footprint is the luma footprint halved).
//!
//! Owns: the resampling. Must not touch: models (it fills a tensor) or GStreamer (it reads
//! plain plane slices).

use super::ChannelOrder;
#[cfg(test)]
use super::zoom::yuv_to_rgb;
use super::zoom::{I420, yuv_rows_to_rgb};

/// Area-filter taps along one axis: for each output index the first source index and `k`
/// weights (8.8 fixed point, summing to 256) of the consecutive source samples from there.
#[derive(Debug, Clone)]
struct AxisTaps {
    k: usize,
    starts: Vec<usize>,
    weights: Vec<u32>,
}

impl AxisTaps {
    /// Taps that shrink `src_len` samples, of which the first `covered` (a length that may end
    /// in a fraction: a chroma plane covers half of an odd luma size) map onto `out_len`.
    fn area(out_len: usize, src_len: usize, covered: f64) -> AxisTaps {
        let scale = covered / out_len.max(1) as f64;
        // Source samples an output footprint of length `scale` can touch.
        let k = ((scale.ceil() as usize) + 1).clamp(1, src_len.max(1));
        let mut starts = Vec::with_capacity(out_len);
        let mut weights = vec![0u32; out_len * k];
        for o in 0..out_len {
            let (a, b) = (o as f64 * scale, (o as f64 + 1.0) * scale);
            let first = (a.floor() as usize).min(src_len.saturating_sub(1));
            // Overlap of [a, b) with each source sample [j, j + 1).
            let mut w = vec![0.0f64; k];
            let mut j = first;
            while (j as f64) < b && j < src_len {
                let overlap = (b.min(j as f64 + 1.0) - a.max(j as f64)).max(0.0);
                if j - first < k {
                    w[j - first] = overlap;
                }
                j += 1;
            }
            // Keep the window inside the plane: shift it back when it would run past the end.
            let start = first.min(src_len.saturating_sub(k));
            let shift = first - start;
            // Cumulative rounding: every output's weights sum to exactly 256.
            let total: f64 = w.iter().sum::<f64>().max(f64::MIN_POSITIVE);
            let row = &mut weights[o * k..(o + 1) * k];
            let (mut cum, mut given) = (0.0f64, 0u32);
            for (i, &wi) in w.iter().enumerate().take(k - shift) {
                cum += wi / total;
                let upto = (cum * 256.0).round() as u32;
                row[i + shift] = upto - given;
                given = upto;
            }
            if let Some(last) = row.iter_mut().rev().find(|x| **x > 0) {
                *last += 256 - given.min(256);
            } else {
                row[shift.min(k - 1)] = 256;
            }
            starts.push(start);
        }
        AxisTaps { k, starts, weights }
    }
}

/// Scratch rows kept between frames: the vertical pass's sums per plane, and one output row
/// of luma and of each chroma plane.
#[derive(Debug, Default)]
pub struct ShrinkScratch {
    sums: [Vec<u16>; 3],
    luma: Vec<i32>,
    chroma: [Vec<i32>; 2],
    wide_chroma: [Vec<i32>; 2],
    taps: Option<ShrinkTaps>,
}

#[derive(Debug, Clone)]
struct ShrinkTaps {
    key: (u32, u32, usize, usize),
    luma_x: AxisTaps,
    luma_y: AxisTaps,
    chroma_x: AxisTaps,
    chroma_y: AxisTaps,
}

/// Renders the whole `frame` shrunk to `out_w x out_h` into `out` (one NCHW image, raw
/// 0..255 values in `order`). Chroma is shrunk to half the output size, as in an I420 image
/// of that size, and each chroma sample serves its 2x2 output pixels.
///
/// Panics if `out` is shorter than `3 * out_w * out_h`.
///
/// On x86-64 CPUs with AVX2 the same code runs compiled for AVX2 (chosen at run time; the
/// binary targets baseline x86-64).
pub fn shrink_nchw(
    frame: &I420<'_>,
    out_w: usize,
    out_h: usize,
    order: ChannelOrder,
    scratch: &mut ShrinkScratch,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { shrink_nchw_avx2(frame, out_w, out_h, order, scratch, out) };
        return;
    }
    shrink_nchw_body(frame, out_w, out_h, order, scratch, out);
}

/// [`shrink_nchw`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn shrink_nchw_avx2(
    frame: &I420<'_>,
    out_w: usize,
    out_h: usize,
    order: ChannelOrder,
    scratch: &mut ShrinkScratch,
    out: &mut [f32],
) {
    shrink_nchw_body(frame, out_w, out_h, order, scratch, out);
}

#[inline(always)]
fn shrink_nchw_body(
    frame: &I420<'_>,
    out_w: usize,
    out_h: usize,
    order: ChannelOrder,
    scratch: &mut ShrinkScratch,
    out: &mut [f32],
) {
    let plane = out_w * out_h;
    let out = &mut out[..3 * plane];
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    if fw == 0 || fh == 0 || plane == 0 {
        out.fill(0.0);
        return;
    }
    let (cw, ch) = (fw.div_ceil(2), fh.div_ceil(2));
    let (ocw, och) = (out_w.div_ceil(2), out_h.div_ceil(2));
    let key = (frame.width, frame.height, out_w, out_h);
    if scratch.taps.as_ref().is_none_or(|t| t.key != key) {
        // The chroma output's footprint: 2 output pixels cover 2 * fw / out_w luma columns,
        // that is fw / out_w chroma columns.
        let cover = |out_len: usize, half_out: usize, luma: usize| {
            luma as f64 / 2.0 * (2 * half_out) as f64 / out_len as f64
        };
        scratch.taps = Some(ShrinkTaps {
            key,
            luma_x: AxisTaps::area(out_w, fw, fw as f64),
            luma_y: AxisTaps::area(out_h, fh, fh as f64),
            chroma_x: AxisTaps::area(ocw, cw, cover(out_w, ocw, fw).min(cw as f64)),
            chroma_y: AxisTaps::area(och, ch, cover(out_h, och, fh).min(ch as f64)),
        });
    }
    let taps = scratch.taps.as_ref().expect("set above");
    let ShrinkScratch {
        sums: [sy, su, sv],
        luma,
        chroma: [cu, cv],
        wide_chroma,
        ..
    } = scratch;
    let (c0, rest) = out.split_at_mut(plane);
    let (c1, c2) = rest.split_at_mut(plane);
    let (r_plane, b_plane) = match order {
        ChannelOrder::Bgr => (c2, c0),
        ChannelOrder::Rgb => (c0, c2),
    };
    for oy in 0..out_h {
        if oy % 2 == 0 {
            let cy = oy / 2;
            sum_rows(frame.u, frame.strides[1], cw, &taps.chroma_y, cy, su);
            sum_rows(frame.v, frame.strides[2], cw, &taps.chroma_y, cy, sv);
            sample_row(su, &taps.chroma_x, cu);
            sample_row(sv, &taps.chroma_x, cv);
        }
        sum_rows(frame.y, frame.strides[0], fw, &taps.luma_y, oy, sy);
        sample_row(sy, &taps.luma_x, luma);
        let row = oy * out_w;
        let (r_row, g_row, b_row) = (
            &mut r_plane[row..row + out_w],
            &mut c1[row..row + out_w],
            &mut b_plane[row..row + out_w],
        );
        if oy % 2 == 0 {
            // Each chroma sample serves two output columns.
            for (wide, half) in wide_chroma.iter_mut().zip([&*cu, &*cv]) {
                wide.clear();
                wide.extend((0..out_w).map(|ox| half[ox / 2]));
            }
        }
        let [wu, wv] = &*wide_chroma;
        yuv_rows_to_rgb(luma, wu, wv, [r_row, g_row, b_row]);
    }
}

/// The vertical pass for output row `oy`: the weighted sum of the source rows it covers, over
/// the plane's `width` columns (8.8 fixed point; 255 x 256 fits 16 bits).
#[inline(always)]
fn sum_rows(p: &[u8], stride: usize, width: usize, taps: &AxisTaps, oy: usize, out: &mut Vec<u16>) {
    out.clear();
    out.resize(width, 0);
    let start = taps.starts[oy];
    for (i, &w) in taps.weights[oy * taps.k..(oy + 1) * taps.k]
        .iter()
        .enumerate()
    {
        if w == 0 {
            continue;
        }
        let w = w as u16;
        let src = &p[(start + i) * stride..(start + i) * stride + width];
        for (acc, &s) in out.iter_mut().zip(src) {
            *acc = acc.wrapping_add(u16::from(s).wrapping_mul(w));
        }
    }
}

/// The horizontal pass over a row of vertical sums: each output the weighted sum of the
/// columns it covers, rounded to 0..255.
#[inline(always)]
fn sample_row(sums: &[u16], taps: &AxisTaps, out: &mut Vec<i32>) {
    out.clear();
    match taps.k {
        1 => sample_row_k::<1>(sums, taps, out),
        2 => sample_row_k::<2>(sums, taps, out),
        3 => sample_row_k::<3>(sums, taps, out),
        4 => sample_row_k::<4>(sums, taps, out),
        5 => sample_row_k::<5>(sums, taps, out),
        _ => out.extend(taps.starts.iter().enumerate().map(|(o, &start)| {
            let w = &taps.weights[o * taps.k..(o + 1) * taps.k];
            let s: u32 = w
                .iter()
                .zip(&sums[start..start + taps.k])
                .map(|(&w, &v)| w * u32::from(v))
                .sum();
            ((s + (1 << 15)) >> 16) as i32
        })),
    }
}

#[inline(always)]
fn sample_row_k<const K: usize>(sums: &[u16], taps: &AxisTaps, out: &mut Vec<i32>) {
    out.extend(
        taps.starts
            .iter()
            .zip(taps.weights.chunks_exact(K))
            .map(|(&start, w)| {
                let src: &[u16; K] = sums[start..start + K].try_into().expect("K taps");
                let mut s = 0u32;
                for t in 0..K {
                    s += w[t] * u32::from(src[t]);
                }
                ((s + (1 << 15)) >> 16) as i32
            }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Shrinks a `w x h` luma plane with neutral chroma to `ow x oh`, as RGB planes.
    fn shrink_luma(y: &[u8], w: u32, h: u32, ow: usize, oh: usize) -> Vec<f32> {
        let c = (w.div_ceil(2) * h.div_ceil(2)) as usize;
        let neutral = vec![128u8; c];
        let f = frame_of(y, &neutral, &neutral, w, h);
        let mut out = vec![0f32; 3 * ow * oh];
        shrink_nchw(
            &f,
            ow,
            oh,
            ChannelOrder::Rgb,
            &mut ShrinkScratch::default(),
            &mut out,
        );
        out
    }

    fn frame_of<'a>(y: &'a [u8], u: &'a [u8], v: &'a [u8], w: u32, h: u32) -> I420<'a> {
        I420 {
            y,
            u,
            v,
            strides: [w as usize, w.div_ceil(2) as usize, w.div_ceil(2) as usize],
            width: w,
            height: h,
        }
    }

    proptest! {
        /// Every output's weights sum to one and stay inside the plane, for any shrink.
        #[test]
        fn taps_sum_to_one_and_stay_inside(src in 1usize..2000, out in 1usize..700) {
            let out = out.min(src);
            for (len, covered) in [(src, src as f64), (src.div_ceil(2), src as f64 / 2.0)] {
                let t = AxisTaps::area(out, len, covered);
                for o in 0..out {
                    let w = &t.weights[o * t.k..(o + 1) * t.k];
                    prop_assert_eq!(w.iter().sum::<u32>(), 256);
                    prop_assert!(t.starts[o] + t.k <= len);
                }
            }
        }
    }

    #[test]
    fn a_flat_frame_stays_flat_and_channels_follow_the_order() {
        // Y 81, U 90, V 240: a strong red (BT.601: R 255, G 0..30, B ~0..60).
        let (w, h) = (1280u32, 720u32);
        let y = vec![81u8; (w * h) as usize];
        let c = (w.div_ceil(2) * h.div_ceil(2)) as usize;
        let (u, v) = (vec![90u8; c], vec![240u8; c]);
        let f = frame_of(&y, &u, &v, w, h);
        let (ow, oh) = (576, 320);
        let mut out = vec![0f32; 3 * ow * oh];
        let mut s = ShrinkScratch::default();
        shrink_nchw(&f, ow, oh, ChannelOrder::Bgr, &mut s, &mut out);
        let (r, g, b) = yuv_to_rgb(81, 90, 240);
        let plane = ow * oh;
        assert!(out[..plane].iter().all(|&x| x == f32::from(b)));
        assert!(out[plane..2 * plane].iter().all(|&x| x == f32::from(g)));
        assert!(out[2 * plane..].iter().all(|&x| x == f32::from(r)));
        shrink_nchw(&f, ow, oh, ChannelOrder::Rgb, &mut s, &mut out);
        assert!(out[..plane].iter().all(|&x| x == f32::from(r)));
    }

    #[test]
    fn each_output_is_the_mean_of_its_footprint() {
        // A 4x shrink of a luma ramp: each output pixel is the mean of a 4x4 block.
        let (w, h) = (64u32, 32u32);
        let y: Vec<u8> = (0..h)
            .flat_map(|r| (0..w).map(move |c| (c * 3 + r) as u8))
            .collect();
        let (ow, oh) = (16usize, 8usize);
        let out = shrink_luma(&y, w, h, ow, oh);
        for oy in 0..oh {
            for ox in 0..ow {
                let mut sum = 0u32;
                for dy in 0..4 {
                    for dx in 0..4 {
                        sum += u32::from(y[(oy * 4 + dy) * w as usize + ox * 4 + dx]);
                    }
                }
                let mean = (sum as f32 / 16.0).round() as i32;
                let (expect, _, _) = yuv_to_rgb(mean, 128, 128);
                let got = out[oy * ow + ox];
                assert!(
                    (got - f32::from(expect)).abs() <= 1.5,
                    "({ox},{oy}): {got} vs {expect}"
                );
            }
        }
    }

    #[test]
    fn fine_stripes_shrink_to_grey_not_to_stripes() {
        // One-pixel stripes shrunk 2.22x: an area filter averages them; sampling two taps
        // would alias them into coarse bands.
        let (w, h) = (1280u32, 720u32);
        let y: Vec<u8> = (0..h)
            .flat_map(|_| (0..w).map(|c| if c % 2 == 0 { 16u8 } else { 235 }))
            .collect();
        let (ow, oh) = (576usize, 320usize);
        let out = shrink_luma(&y, w, h, ow, oh);
        let row = &out[..ow];
        let (lo, hi) = row
            .iter()
            .fold((255f32, 0f32), |(l, h), &x| (l.min(x), h.max(x)));
        assert!(hi - lo <= 60.0, "stripes survived: {lo}..{hi}");
    }

    #[test]
    fn odd_sizes_and_strides_with_padding_are_read_safely() {
        let (w, h) = (641u32, 361u32);
        let stride = 704usize;
        let cstride = 352usize;
        let y = vec![200u8; stride * h as usize];
        let c = cstride * h.div_ceil(2) as usize;
        let (u, v) = (vec![128u8; c], vec![128u8; c]);
        let f = I420 {
            y: &y,
            u: &u,
            v: &v,
            strides: [stride, cstride, cstride],
            width: w,
            height: h,
        };
        let mut out = vec![0f32; 3 * 288 * 160];
        shrink_nchw(
            &f,
            288,
            160,
            ChannelOrder::Bgr,
            &mut ShrinkScratch::default(),
            &mut out,
        );
        let (r, _, _) = yuv_to_rgb(200, 128, 128);
        assert!(out.iter().all(|&x| x == f32::from(r)));
    }

    #[test]
    fn the_avx2_build_and_the_portable_build_give_the_same_floats() {
        // `shrink_nchw` picks the AVX2 build where the CPU has it: the portable body must
        // give exactly the same tensor (integer arithmetic, then exact conversions).
        let (w, h) = (1283u32, 721u32);
        let stride = 1296usize;
        let cstride = 656usize;
        let noise = |n: usize, seed: usize| -> Vec<u8> {
            (0..n)
                .map(|i| ((i * 2654435761 + seed) >> 7) as u8)
                .collect()
        };
        let y = noise(stride * h as usize, 1);
        let c = cstride * h.div_ceil(2) as usize;
        let (u, v) = (noise(c, 2), noise(c, 3));
        let f = I420 {
            y: &y,
            u: &u,
            v: &v,
            strides: [stride, cstride, cstride],
            width: w,
            height: h,
        };
        for (ow, oh) in [(576usize, 320usize), (448, 256), (1283, 721), (37, 19)] {
            let mut a = vec![0f32; 3 * ow * oh];
            let mut b = vec![1f32; 3 * ow * oh];
            shrink_nchw(
                &f,
                ow,
                oh,
                ChannelOrder::Rgb,
                &mut ShrinkScratch::default(),
                &mut a,
            );
            shrink_nchw_body(
                &f,
                ow,
                oh,
                ChannelOrder::Rgb,
                &mut ShrinkScratch::default(),
                &mut b,
            );
            assert!(a == b, "{ow}x{oh}");
        }
    }
}
