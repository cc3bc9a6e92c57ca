//! Contrast normalisation of the detector's input for grey, dark and washed-out pictures
//! (night infrared, dusk, fog): the luma range that most of the frame uses is stretched to the
//! detector's full input range, the same linear map for every channel, in the input tensor only
//! (the frame that is redacted and encoded is untouched).
//!
//! Owns: measuring a frame's luma range and stretching a rendered tensor. Must not touch:
//! frames, models, the passes' scheduling.

/// Frames whose central luma range (1st to 99th percentile) spans at least this many levels
/// are left as they are: daylight footage uses most of the range.
pub const FULL_RANGE: u32 = 160;

/// The most the range is stretched (sensor noise is stretched with it).
pub const MAX_GAIN: f32 = 3.0;

/// A linear map `v -> (v - lo) * gain`, clamped to 0..255.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stretch {
    pub lo: f32,
    pub gain: f32,
}

impl Stretch {
    /// The stretch for a luma plane (`width x height` at `stride`), measured on every 4th
    /// pixel of every 4th row; `None` when the picture already spans [`FULL_RANGE`] levels.
    pub fn of_luma(y: &[u8], stride: usize, width: usize, height: usize) -> Option<Stretch> {
        let mut hist = [0u32; 256];
        let mut n = 0u32;
        for row in (0..height).step_by(4) {
            let Some(line) = y.get(row * stride..row * stride + width) else {
                break;
            };
            for &v in line.iter().step_by(4) {
                hist[v as usize] += 1;
                n += 1;
            }
        }
        if n == 0 {
            return None;
        }
        let at = |q: f64| {
            let want = (q * f64::from(n)).ceil() as u32;
            let mut seen = 0;
            for (v, &c) in hist.iter().enumerate() {
                seen += c;
                if seen >= want.max(1) {
                    return v as u32;
                }
            }
            255
        };
        let (lo, hi) = (at(0.01), at(0.99));
        let range = hi.saturating_sub(lo).max(1);
        if range >= FULL_RANGE {
            return None;
        }
        Some(Stretch {
            lo: lo as f32,
            gain: (255.0 / range as f32).min(MAX_GAIN),
        })
    }

    /// Applies the stretch to a rendered input tensor (values 0..255).
    pub fn apply(&self, tensor: &mut [f32]) {
        let (lo, gain) = (self.lo, self.gain);
        for v in tensor {
            *v = ((*v - lo) * gain).clamp(0.0, 255.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect()
    }

    #[test]
    fn a_picture_using_the_full_range_is_left_alone() {
        let p = plane(64, 64, |x, _| (x * 4) as u8);
        assert_eq!(Stretch::of_luma(&p, 64, 64, 64), None);
    }

    #[test]
    fn a_grey_low_contrast_picture_is_stretched_to_the_full_range() {
        // Night infrared: luma 40..140.
        let p = plane(64, 64, |x, _| (40 + x * 100 / 63) as u8);
        let s = Stretch::of_luma(&p, 64, 64, 64).expect("stretched");
        assert!((s.lo - 41.0).abs() <= 2.0, "{s:?}");
        let mut t = vec![40.0, 90.0, 140.0];
        s.apply(&mut t);
        assert!(t[0] <= 2.0 && t[2] >= 250.0, "{t:?}");
        assert!((t[1] - 125.0).abs() < 10.0, "{t:?}");
    }

    #[test]
    fn the_gain_is_bounded_and_values_stay_in_range() {
        let p = plane(64, 64, |x, _| 100 + (x % 3) as u8);
        let s = Stretch::of_luma(&p, 64, 64, 64).unwrap();
        assert_eq!(s.gain, MAX_GAIN);
        let mut t = vec![0.0, 100.0, 255.0];
        s.apply(&mut t);
        assert!(t.iter().all(|v| (0.0..=255.0).contains(v)), "{t:?}");
    }

    #[test]
    fn strides_wider_than_the_picture_are_read_row_by_row() {
        // Padding bytes of 255 beyond the width must not count.
        let p = plane(
            80,
            16,
            |x, _| if x < 64 { 60 + (x as u8 % 40) } else { 255 },
        );
        let s = Stretch::of_luma(&p, 80, 64, 16).expect("stretched");
        assert!(s.gain > 2.0, "{s:?}");
    }
}
