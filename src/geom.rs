//! Box geometry shared by the detector decoders, the tracker and the redactor.
//!
//! Owns: the floating-point face box in input pixels ([`BoxF`]), IoU, margins, clipping to the
//! frame, and the conversion to whole-pixel rectangles on (possibly subsampled) planes.
//! Must not touch: pixels, models or media. Everything here is pure and property-tested.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in input-frame pixels: top-left corner plus width and height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(from = "[FiniteF32; 4]", into = "[f32; 4]")]
pub struct BoxF {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl From<[f32; 4]> for BoxF {
    fn from(v: [f32; 4]) -> Self {
        BoxF::new(v[0], v[1], v[2], v[3])
    }
}

impl From<[FiniteF32; 4]> for BoxF {
    fn from(v: [FiniteF32; 4]) -> Self {
        BoxF::from(v.map(|c| c.0))
    }
}

impl From<BoxF> for [f32; 4] {
    fn from(b: BoxF) -> Self {
        // Two decimals are plenty for pixel boxes and keep sidecars small and stable; values so
        // large that the rounding would overflow are written as they are.
        let r = |v: f32| {
            let rounded = (v * 100.0).round() / 100.0;
            if rounded.is_finite() { rounded } else { v }
        };
        [r(b.x), r(b.y), r(b.w), r(b.h)]
    }
}

/// An `f32` as read from JSON: numbers beyond `f32`'s range are refused (they would become
/// infinity, which JSON cannot write back, so what was read would not serialize again).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FiniteF32(pub f32);

impl<'de> Deserialize<'de> for FiniteF32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        let narrowed = v as f32;
        if narrowed.is_finite() {
            Ok(FiniteF32(narrowed))
        } else {
            Err(serde::de::Error::custom(format_args!(
                "{v} is out of range for a 32-bit number"
            )))
        }
    }
}

/// An integer rectangle `[x0, x1) x [y0, y1)` on a plane; never empty when returned by
/// [`BoxF::to_plane_rect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl Rect {
    pub fn width(&self) -> usize {
        self.x1 - self.x0
    }
    pub fn height(&self) -> usize {
        self.y1 - self.y0
    }
    pub fn area(&self) -> u64 {
        self.width() as u64 * self.height() as u64
    }
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
    /// The smallest rectangle holding both.
    pub fn union(&self, o: &Rect) -> Rect {
        Rect {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }
}

impl BoxF {
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        BoxF {
            x,
            y,
            w: w.max(0.0),
            h: h.max(0.0),
        }
    }

    /// From corner coordinates `(x1, y1, x2, y2)`.
    pub fn from_corners(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        BoxF::new(x1, y1, x2 - x1, y2 - y1)
    }

    pub fn x2(&self) -> f32 {
        self.x + self.w
    }
    pub fn y2(&self) -> f32 {
        self.y + self.h
    }
    pub fn area(&self) -> f32 {
        self.w * self.h
    }
    pub fn center(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }
    /// Distance between the centres of two boxes.
    pub fn center_distance(&self, o: &BoxF) -> f32 {
        let ((ax, ay), (bx, by)) = (self.center(), o.center());
        (ax - bx).hypot(ay - by)
    }

    pub fn is_finite(&self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.w.is_finite() && self.h.is_finite()
    }

    pub fn intersection(&self, o: &BoxF) -> f32 {
        let iw = (self.x2().min(o.x2()) - self.x.max(o.x)).max(0.0);
        let ih = (self.y2().min(o.y2()) - self.y.max(o.y)).max(0.0);
        iw * ih
    }

    /// Intersection over union; 0 for disjoint or degenerate boxes.
    pub fn iou(&self, o: &BoxF) -> f32 {
        let inter = self.intersection(o);
        let union = self.area() + o.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// Scales both axes independently (detector input pixels -> frame pixels).
    pub fn scale(&self, sx: f32, sy: f32) -> BoxF {
        BoxF::new(self.x * sx, self.y * sy, self.w * sx, self.h * sy)
    }

    /// Grows the box by `frac` of its width/height on every side (0.2 = 20% each side).
    pub fn enlarge(&self, frac: f32) -> BoxF {
        let dx = self.w * frac;
        let dy = self.h * frac;
        BoxF::new(
            self.x - dx,
            self.y - dy,
            self.w + 2.0 * dx,
            self.h + 2.0 * dy,
        )
    }

    /// Clips to `[0, width) x [0, height)`; may return an empty box.
    pub fn clip(&self, width: f32, height: f32) -> BoxF {
        let x1 = self.x.clamp(0.0, width);
        let y1 = self.y.clamp(0.0, height);
        let x2 = self.x2().clamp(0.0, width);
        let y2 = self.y2().clamp(0.0, height);
        BoxF::from_corners(x1, y1, x2, y2)
    }

    /// Linear interpolation between two boxes, `t` in `[0, 1]`.
    pub fn lerp(&self, o: &BoxF, t: f32) -> BoxF {
        let l = |a: f32, b: f32| a + (b - a) * t;
        BoxF::new(
            l(self.x, o.x),
            l(self.y, o.y),
            l(self.w, o.w),
            l(self.h, o.h),
        )
    }

    /// The whole-pixel rectangle covering this box on a plane of `plane_w x plane_h` that is
    /// subsampled by `sub_x`/`sub_y` (1 for luma, 2 for I420 chroma). Rounds outwards so the
    /// covered area never shrinks; `None` when nothing of the box lies on the plane.
    pub fn to_plane_rect(
        &self,
        plane_w: usize,
        plane_h: usize,
        sub_x: usize,
        sub_y: usize,
    ) -> Option<Rect> {
        if !self.is_finite() || self.w <= 0.0 || self.h <= 0.0 || plane_w == 0 || plane_h == 0 {
            return None;
        }
        let (sx, sy) = (sub_x.max(1) as f32, sub_y.max(1) as f32);
        let x0 = (self.x / sx).floor().max(0.0);
        let y0 = (self.y / sy).floor().max(0.0);
        let x1 = (self.x2() / sx).ceil().min(plane_w as f32);
        let y1 = (self.y2() / sy).ceil().min(plane_h as f32);
        if x1 <= x0 || y1 <= y0 {
            return None;
        }
        Some(Rect {
            x0: x0 as usize,
            y0: y0 as usize,
            x1: x1 as usize,
            y1: y1 as usize,
        })
    }
}

/// Greedy non-maximum suppression: keeps the highest-scoring box of every group that overlaps
/// by more than `iou_threshold`. Returns the kept indices, best first.
pub fn nms(boxes: &[BoxF], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    debug_assert_eq!(boxes.len(), scores.len());
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut keep: Vec<usize> = Vec::new();
    let mut suppressed = vec![false; boxes.len()];
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[pos + 1..] {
            if !suppressed[j] && boxes[i].iou(&boxes[j]) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// Rounds `v` up to the next multiple of `m` (m > 0).
pub fn ceil_to_multiple(v: u32, m: u32) -> u32 {
    v.div_ceil(m) * m
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iou_of_identical_boxes_is_one_and_disjoint_is_zero() {
        let a = BoxF::new(10.0, 10.0, 20.0, 20.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.iou(&BoxF::new(100.0, 100.0, 5.0, 5.0)), 0.0);
        let half = BoxF::new(20.0, 10.0, 20.0, 20.0);
        assert!((a.iou(&half) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_best_of_overlapping_and_all_disjoint() {
        let boxes = vec![
            BoxF::new(0.0, 0.0, 10.0, 10.0),
            BoxF::new(1.0, 1.0, 10.0, 10.0),
            BoxF::new(50.0, 50.0, 10.0, 10.0),
        ];
        let keep = nms(&boxes, &[0.6, 0.9, 0.5], 0.3);
        assert_eq!(keep, vec![1, 2]);
    }

    #[test]
    fn plane_rect_at_frame_borders_is_clipped() {
        let b = BoxF::new(-5.0, -5.0, 20.0, 20.0);
        assert_eq!(
            b.to_plane_rect(100, 100, 1, 1),
            Some(Rect {
                x0: 0,
                y0: 0,
                x1: 15,
                y1: 15
            })
        );
        let right = BoxF::new(95.5, 90.0, 20.0, 20.0);
        assert_eq!(
            right
                .to_plane_rect(50, 50, 2, 2)
                .map(|r| (r.x0, r.x1, r.y0, r.y1)),
            Some((47, 50, 45, 50))
        );
        assert_eq!(
            BoxF::new(100.0, 0.0, 5.0, 5.0).to_plane_rect(100, 100, 1, 1),
            None
        );
        assert_eq!(
            BoxF::new(f32::NAN, 0.0, 5.0, 5.0).to_plane_rect(100, 100, 1, 1),
            None
        );
    }

    #[test]
    fn serialises_as_array_rounded() {
        let b = BoxF::new(1.234_56, 2.0, 3.0, 4.999_9);
        assert_eq!(serde_json::to_string(&b).unwrap(), "[1.23,2.0,3.0,5.0]");
        let back: BoxF = serde_json::from_str("[1,2,3,4]").unwrap();
        assert_eq!(back, BoxF::new(1.0, 2.0, 3.0, 4.0));
    }

    fn arb_box() -> impl Strategy<Value = BoxF> {
        (
            -500.0f32..2500.0,
            -500.0f32..2500.0,
            0.0f32..800.0,
            0.0f32..800.0,
        )
            .prop_map(|(x, y, w, h)| BoxF::new(x, y, w, h))
    }

    proptest! {
        #[test]
        fn plane_rect_stays_inside_plane_and_covers_the_clipped_box(
            b in arb_box(), pw in 1usize..2000, ph in 1usize..2000, sub in 1usize..3
        ) {
            if let Some(r) = b.to_plane_rect(pw, ph, sub, sub) {
                prop_assert!(r.x0 < r.x1 && r.y0 < r.y1);
                prop_assert!(r.x1 <= pw && r.y1 <= ph);
                let c = b.clip((pw * sub) as f32, (ph * sub) as f32);
                // The rectangle covers the clipped box (outward rounding).
                prop_assert!((r.x0 * sub) as f32 <= c.x + 1e-3);
                prop_assert!((r.y0 * sub) as f32 <= c.y + 1e-3);
                prop_assert!((r.x1 * sub) as f32 >= c.x2().min((pw * sub) as f32) - 1e-3);
                prop_assert!((r.y1 * sub) as f32 >= c.y2().min((ph * sub) as f32) - 1e-3);
            }
        }

        #[test]
        fn iou_is_symmetric_and_bounded(a in arb_box(), b in arb_box()) {
            let i = a.iou(&b);
            prop_assert!((0.0..=1.0 + 1e-5).contains(&i));
            prop_assert!((i - b.iou(&a)).abs() < 1e-5);
        }

        #[test]
        fn center_distance_is_symmetric_and_zero_to_itself(a in arb_box(), b in arb_box()) {
            prop_assert!((a.center_distance(&b) - b.center_distance(&a)).abs() < 1e-3);
            prop_assert!(a.center_distance(&a) == 0.0 && a.center_distance(&b) >= 0.0);
        }

        #[test]
        fn enlarge_contains_original(b in arb_box(), frac in 0.0f32..1.0) {
            let e = b.enlarge(frac);
            prop_assert!(e.x <= b.x + 1e-3 && e.y <= b.y + 1e-3);
            prop_assert!(e.x2() >= b.x2() - 1e-3 && e.y2() >= b.y2() - 1e-3);
        }

        #[test]
        fn lerp_endpoints(a in arb_box(), b in arb_box()) {
            let s = a.lerp(&b, 0.0);
            let e = a.lerp(&b, 1.0);
            prop_assert!((s.x - a.x).abs() < 1e-2 && (e.x - b.x).abs() < 1e-2);
            prop_assert!((s.h - a.h).abs() < 1e-2 && (e.h - b.h).abs() < 1e-2);
        }

        #[test]
        fn clip_stays_in_frame(b in arb_box(), w in 1.0f32..4000.0, h in 1.0f32..4000.0) {
            let c = b.clip(w, h);
            prop_assert!(c.x >= 0.0 && c.y >= 0.0 && c.x2() <= w + 1e-3 && c.y2() <= h + 1e-3);
        }
    }
}
