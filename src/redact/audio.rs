//! Voice redaction on raw audio (F32, interleaved, the stream's own rate), sample-accurate.
//!
//! Owns: the speech mask (VAD segments padded before and after, with short fades so that
//! nothing clicks), and what each mode does inside it:
//! - `mute`: silence;
//! - `bleep`: a 1 kHz tone at -14 dBFS in place of the speech;
//! - `disguise`: the McAdams-coefficient transform of the VoicePrivacy challenge baseline
//!   (each LPC pole's angle φ becomes φ^α, α = 0.8): the formants move, the words stay
//!   intelligible, the pitch (F0) and the rhythm do not change;
//! - `tag` and `keep`: samples untouched.
//!
//! Must not touch: the VAD itself or GStreamer.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// What happens to speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VoiceMode {
    /// Silence inside speech (default).
    #[default]
    Mute,
    /// A 1 kHz tone in place of speech.
    Bleep,
    /// Speech stays intelligible, the voice's formants are shifted (McAdams coefficient).
    Disguise,
    /// Samples untouched; speech segments recorded in the sidecar.
    Tag,
    /// No voice processing at all (no VAD).
    Keep,
}

impl VoiceMode {
    pub fn name(&self) -> &'static str {
        match self {
            VoiceMode::Mute => "mute",
            VoiceMode::Bleep => "bleep",
            VoiceMode::Disguise => "disguise",
            VoiceMode::Tag => "tag",
            VoiceMode::Keep => "keep",
        }
    }
    /// Whether voice activity detection runs in this mode.
    pub fn needs_vad(&self) -> bool {
        !matches!(self, VoiceMode::Keep)
    }
    /// Whether samples change.
    pub fn modifies_samples(&self) -> bool {
        matches!(
            self,
            VoiceMode::Mute | VoiceMode::Bleep | VoiceMode::Disguise
        )
    }
}

pub const BLEEP_HZ: f64 = 1000.0;
/// Bleep amplitude: -14 dBFS, clearly audible, not harsh.
pub const BLEEP_AMPLITUDE: f64 = 0.2;
/// Length of the fades at each end of a masked interval (inside the padding).
pub const FADE_S: f64 = 0.01;

/// Where speech is: padded, merged intervals in stream seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeechMask {
    intervals: Vec<(f64, f64)>,
}

impl SpeechMask {
    /// Builds the mask from raw segments `(start, end)`, each grown by `pad` on both sides;
    /// overlapping intervals merge.
    pub fn new(segments: impl IntoIterator<Item = (f64, f64)>, pad: f64) -> SpeechMask {
        let mut v: Vec<(f64, f64)> = segments
            .into_iter()
            .filter(|(a, b)| a.is_finite() && b.is_finite() && b >= a)
            .map(|(a, b)| (a - pad, b + pad))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged: Vec<(f64, f64)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        SpeechMask { intervals: merged }
    }

    /// Everything is speech (used when the VAD failed and the track is muted as a whole).
    pub fn everything() -> SpeechMask {
        SpeechMask {
            intervals: vec![(f64::NEG_INFINITY, f64::INFINITY)],
        }
    }

    pub fn intervals(&self) -> &[(f64, f64)] {
        &self.intervals
    }

    /// How much of the original is kept at time `t`: 0 inside an interval, 1 outside, with a
    /// linear fade of [`FADE_S`] just inside each edge.
    pub fn keep(&self, t: f64) -> f64 {
        // Intervals are few; find the one containing t.
        let i = self.intervals.partition_point(|iv| iv.1 < t);
        match self.intervals.get(i) {
            Some(&(a, b)) if t >= a => {
                let depth = (t - a).min(b - t);
                (1.0 - depth / FADE_S).clamp(0.0, 1.0)
            }
            _ => 1.0,
        }
    }

    /// Whether `[t0, t1)` touches the mask at all.
    pub fn touches(&self, t0: f64, t1: f64) -> bool {
        let i = self.intervals.partition_point(|iv| iv.1 < t0);
        self.intervals.get(i).is_some_and(|&(a, _)| a < t1)
    }
}

/// Applies `mode` to interleaved samples starting at stream time `t0`. For `Disguise`,
/// `disguised` holds the transformed signal for the same samples (same layout).
pub fn apply(
    mode: VoiceMode,
    samples: &mut [f32],
    channels: usize,
    rate: u32,
    t0: f64,
    mask: &SpeechMask,
    disguised: Option<&[f32]>,
) {
    if !mode.modifies_samples() || channels == 0 || rate == 0 {
        return;
    }
    let frames = samples.len() / channels;
    let dt = 1.0 / rate as f64;
    if !mask.touches(t0, t0 + frames as f64 * dt) {
        return;
    }
    for f in 0..frames {
        let t = t0 + f as f64 * dt;
        let k = mask.keep(t);
        if k >= 1.0 {
            continue;
        }
        let replacement = match mode {
            VoiceMode::Bleep => {
                Some((BLEEP_AMPLITUDE * (2.0 * std::f64::consts::PI * BLEEP_HZ * t).sin()) as f32)
            }
            _ => None,
        };
        for c in 0..channels {
            let i = f * channels + c;
            let other = match mode {
                VoiceMode::Mute => 0.0,
                VoiceMode::Bleep => replacement.unwrap_or(0.0),
                VoiceMode::Disguise => disguised.and_then(|d| d.get(i).copied()).unwrap_or(0.0),
                VoiceMode::Tag | VoiceMode::Keep => samples[i],
            };
            samples[i] = (samples[i] as f64 * k + other as f64 * (1.0 - k)) as f32;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// McAdams-coefficient voice disguise
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
struct C {
    re: f64,
    im: f64,
}

impl C {
    fn new(re: f64, im: f64) -> C {
        C { re, im }
    }
    fn add(self, o: C) -> C {
        C::new(self.re + o.re, self.im + o.im)
    }
    fn sub(self, o: C) -> C {
        C::new(self.re - o.re, self.im - o.im)
    }
    fn mul(self, o: C) -> C {
        C::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    fn div(self, o: C) -> C {
        let d = o.re * o.re + o.im * o.im;
        if d == 0.0 {
            return C::new(0.0, 0.0);
        }
        C::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        )
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn arg(self) -> f64 {
        self.im.atan2(self.re)
    }
    fn polar(r: f64, phi: f64) -> C {
        C::new(r * phi.cos(), r * phi.sin())
    }
}

/// Roots of the monic polynomial `z^n + c[0] z^(n-1) + ... + c[n-1]` (Durand–Kerner).
fn roots(c: &[f64]) -> Vec<C> {
    let n = c.len();
    let eval = |z: C| {
        let mut acc = C::new(1.0, 0.0);
        for &k in c {
            acc = acc.mul(z).add(C::new(k, 0.0));
        }
        acc
    };
    let seed = C::new(0.4, 0.9);
    let mut z: Vec<C> = (0..n)
        .map(|i| {
            let mut p = C::new(1.0, 0.0);
            for _ in 0..=i {
                p = p.mul(seed);
            }
            p
        })
        .collect();
    for _ in 0..200 {
        let mut delta: f64 = 0.0;
        for i in 0..n {
            let mut den = C::new(1.0, 0.0);
            for j in 0..n {
                if i != j {
                    den = den.mul(z[i].sub(z[j]));
                }
            }
            let step = eval(z[i]).div(den);
            z[i] = z[i].sub(step);
            delta = delta.max(step.abs());
        }
        if delta < 1e-12 {
            break;
        }
    }
    z
}

/// Real coefficients `a[1..=n]` of `prod (1 - r_i z^-1)` (with `a[0] = 1`).
fn poly_from_roots(r: &[C]) -> Vec<f64> {
    let mut p = vec![C::new(1.0, 0.0)];
    for &root in r {
        let mut next = vec![C::new(0.0, 0.0); p.len() + 1];
        for (k, &v) in p.iter().enumerate() {
            next[k] = next[k].add(v);
            next[k + 1] = next[k + 1].sub(v.mul(root));
        }
        p = next;
    }
    p.iter().map(|v| v.re).collect()
}

/// LPC coefficients `a[0..=order]` (a[0] = 1) by autocorrelation and Levinson–Durbin.
fn lpc(x: &[f64], order: usize) -> Option<Vec<f64>> {
    let n = x.len();
    let r: Vec<f64> = (0..=order)
        .map(|k| (k..n).map(|i| x[i] * x[i - k]).sum::<f64>())
        .collect();
    if r[0] <= 1e-10 {
        return None;
    }
    let mut a = vec![0.0; order + 1];
    a[0] = 1.0;
    let mut err = r[0] * (1.0 + 1e-9);
    for i in 1..=order {
        let mut acc = r[i];
        for j in 1..i {
            acc += a[j] * r[i - j];
        }
        let k = -acc / err;
        let prev = a.clone();
        for j in 1..i {
            a[j] = prev[j] + k * prev[i - j];
        }
        a[i] = k;
        err *= 1.0 - k * k;
        if err <= 0.0 {
            return None;
        }
    }
    Some(a)
}

/// Streaming McAdams voice transform for one channel: Hann-windowed frames of 25 ms with 50%
/// overlap; per frame LPC analysis, pole angles φ → φ^α, resynthesis from the residual, energy
/// kept, overlap-add. Output lags input by one frame; [`McAdams::finish`] drains it.
pub struct McAdams {
    alpha: f64,
    order: usize,
    frame: usize,
    hop: usize,
    window: Vec<f64>,
    pending: VecDeque<f64>,
    acc: Vec<f64>,
    /// Samples of input received; position in the overlap-add output stream (which starts
    /// with `hop` samples of priming).
    received: u64,
    stream_pos: u64,
}

impl McAdams {
    pub fn new(rate: u32, alpha: f64) -> McAdams {
        let frame = (((rate as f64 * 0.025) as usize) / 2 * 2).max(16);
        let hop = frame / 2;
        let window = (0..frame)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / frame as f64).cos())
            .collect();
        McAdams {
            alpha,
            order: ((2 + rate / 1000) as usize).min(24),
            frame,
            hop,
            window,
            // Prime with half a frame of silence so that the window sum is 1 from sample 0.
            pending: std::iter::repeat_n(0.0, hop).collect(),
            acc: vec![0.0; frame],
            received: 0,
            stream_pos: 0,
        }
    }

    /// Feeds samples; returns the transformed samples that became final (in order).
    pub fn push(&mut self, x: &[f32]) -> Vec<f32> {
        self.pending.extend(x.iter().map(|&v| v as f64));
        self.received += x.len() as u64;
        let mut stream = Vec::new();
        while self.pending.len() >= self.frame {
            self.step(&mut stream);
        }
        self.emit(stream)
    }

    /// Ends the stream: returns the remaining transformed samples.
    pub fn finish(&mut self) -> Vec<f32> {
        let mut stream = Vec::new();
        let end = self.received + self.hop as u64;
        while self.stream_pos + (stream.len() as u64) < end {
            let need = self.frame.saturating_sub(self.pending.len());
            self.pending.extend(std::iter::repeat_n(0.0, need));
            self.step(&mut stream);
        }
        self.emit(stream)
    }

    /// Keeps the output samples that belong to real input: the overlap-add stream starts
    /// with `hop` samples of priming and may run past the end after padding.
    fn emit(&mut self, stream: Vec<f32>) -> Vec<f32> {
        let (lo, hi) = (self.hop as u64, self.received + self.hop as u64);
        let mut out = Vec::with_capacity(stream.len());
        for v in stream {
            if (lo..hi).contains(&self.stream_pos) {
                out.push(v);
            }
            self.stream_pos += 1;
        }
        out
    }

    fn step(&mut self, out: &mut Vec<f32>) {
        let x: Vec<f64> = self
            .pending
            .iter()
            .take(self.frame)
            .zip(&self.window)
            .map(|(v, w)| v * w)
            .collect();
        let y = self.transform(&x);
        for (a, v) in self.acc.iter_mut().zip(&y) {
            *a += v;
        }
        out.extend(self.acc[..self.hop].iter().map(|&v| v as f32));
        self.acc.drain(..self.hop);
        self.acc.extend(std::iter::repeat_n(0.0, self.hop));
        self.pending.drain(..self.hop);
    }

    fn transform(&self, x: &[f64]) -> Vec<f64> {
        let energy: f64 = x.iter().map(|v| v * v).sum();
        let Some(a) = lpc(x, self.order).filter(|_| energy > 1e-9) else {
            return x.to_vec();
        };
        // Residual e = A(z) x.
        let p = self.order;
        let e: Vec<f64> = (0..x.len())
            .map(|n| (0..=p.min(n)).map(|k| a[k] * x[n - k]).sum())
            .collect();
        // Poles: roots of z^p + a1 z^(p-1) + ... + ap; move each angle φ to φ^α.
        let mut r = roots(&a[1..]);
        for z in r.iter_mut() {
            let (m, phi) = (z.abs().min(0.999), z.arg());
            if z.im.abs() > 1e-9 {
                let s = phi.signum();
                *z = C::polar(m, s * phi.abs().powf(self.alpha));
            }
        }
        let b = poly_from_roots(&r);
        if b.iter().any(|v| !v.is_finite()) {
            return x.to_vec();
        }
        // Resynthesis y = e / B(z).
        let mut y = vec![0.0; x.len()];
        for n in 0..x.len() {
            let mut v = e[n];
            for k in 1..=p.min(n) {
                v -= b[k] * y[n - k];
            }
            y[n] = v;
        }
        let ey: f64 = y.iter().map(|v| v * v).sum();
        if !(ey.is_finite() && ey > 1e-12) {
            return x.to_vec();
        }
        let g = (energy / ey).sqrt();
        y.iter().map(|v| v * g).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_pads_merges_and_fades_inside_the_padding() {
        let m = SpeechMask::new([(1.0, 2.0), (2.3, 3.0)], 0.2);
        assert_eq!(m.intervals(), &[(0.8, 3.2)]);
        assert_eq!(m.keep(0.5), 1.0);
        assert_eq!(m.keep(1.0), 0.0, "speech itself is fully masked");
        assert_eq!(m.keep(2.9), 0.0);
        let mid_fade = m.keep(0.8 + FADE_S / 2.0);
        assert!((mid_fade - 0.5).abs() < 1e-6, "{mid_fade}");
        assert_eq!(m.keep(3.3), 1.0);
        assert!(m.touches(3.0, 3.1) && !m.touches(3.3, 4.0));
    }

    fn sine(rate: u32, f: f64, secs: f64) -> Vec<f32> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    #[test]
    fn mute_silences_exactly_the_masked_time_and_keeps_the_rest_bit_exact() {
        let rate = 16000;
        let orig = sine(rate, 300.0, 3.0);
        let mut s = orig.clone();
        let m = SpeechMask::new([(1.0, 2.0)], 0.2);
        apply(VoiceMode::Mute, &mut s, 1, rate, 0.0, &m, None);
        for (i, (&a, &b)) in orig.iter().zip(&s).enumerate() {
            let t = i as f64 / rate as f64;
            if !(0.8..=3.2).contains(&t) {
                assert_eq!(a, b, "t={t}");
            }
            if (0.82..=2.18).contains(&t) {
                assert_eq!(b, 0.0, "t={t}");
            }
        }
    }

    #[test]
    fn bleep_is_a_1khz_tone_at_the_set_level() {
        let rate = 48000;
        let mut s = vec![0.0f32; 2 * rate as usize]; // stereo, 1 s
        let m = SpeechMask::new([(0.0, 1.0)], 0.0);
        apply(VoiceMode::Bleep, &mut s, 2, rate, 0.0, &m, None);
        let peak = s.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
        assert!((peak as f64 - BLEEP_AMPLITUDE).abs() < 0.01, "{peak}");
        // Zero crossings of one channel over 0.5 s: ~1000 (2 per period).
        let ch: Vec<f32> = s.chunks(2).map(|c| c[0]).skip(12000).take(24000).collect();
        let zc = ch
            .windows(2)
            .filter(|w| w[0].signum() != w[1].signum())
            .count();
        assert!((990..=1010).contains(&zc), "{zc}");
    }

    #[test]
    fn tag_and_keep_change_nothing() {
        let orig = sine(16000, 200.0, 1.0);
        for mode in [VoiceMode::Tag, VoiceMode::Keep] {
            let mut s = orig.clone();
            apply(mode, &mut s, 1, 16000, 0.0, &SpeechMask::everything(), None);
            assert_eq!(s, orig);
        }
    }

    #[test]
    fn roots_and_polynomial_round_trip() {
        // (1 - 0.5 z^-1)(1 - (0.3+0.4i) z^-1)(1 - (0.3-0.4i) z^-1)
        let r = [C::new(0.5, 0.0), C::new(0.3, 0.4), C::new(0.3, -0.4)];
        let a = poly_from_roots(&r);
        let mut found = roots(&a[1..]);
        found.sort_by(|x, y| x.im.total_cmp(&y.im));
        assert!((found[0].re - 0.3).abs() < 1e-9 && (found[0].im + 0.4).abs() < 1e-9);
        assert!((found[1].re - 0.5).abs() < 1e-9);
    }

    #[test]
    fn mcadams_keeps_length_and_energy_and_moves_the_spectrum() {
        let rate = 16000;
        // A buzzy "vowel": harmonics of 120 Hz shaped by a resonance near 700 Hz.
        let x: Vec<f32> = (0..rate as usize)
            .map(|i| {
                let t = i as f64 / rate as f64;
                (1..40)
                    .map(|h| {
                        let f = 120.0 * h as f64;
                        let amp = 1.0 / (1.0 + ((f - 700.0) / 150.0).powi(2));
                        amp * (2.0 * std::f64::consts::PI * f * t).sin()
                    })
                    .sum::<f64>() as f32
                    * 0.2
            })
            .collect();
        let mut m = McAdams::new(rate, 0.8);
        let mut y = Vec::new();
        for chunk in x.chunks(333) {
            y.extend(m.push(chunk));
        }
        y.extend(m.finish());
        assert_eq!(y.len(), x.len());
        let e = |v: &[f32]| v.iter().map(|s| (*s as f64).powi(2)).sum::<f64>();
        let ratio = e(&y[800..15200]) / e(&x[800..15200]);
        assert!((0.6..1.6).contains(&ratio), "energy ratio {ratio}");
        // The resonance moves up (angles below 1 rad grow): more energy above 800 Hz.
        let band = |v: &[f32], lo: f64, hi: f64| -> f64 {
            // Goertzel-style energy sum over harmonics in [lo, hi).
            (1..40)
                .map(|h| 120.0 * h as f64)
                .filter(|f| *f >= lo && *f < hi)
                .map(|f| {
                    let (mut re, mut im) = (0.0, 0.0);
                    for (i, s) in v.iter().enumerate() {
                        let ph = 2.0 * std::f64::consts::PI * f * i as f64 / rate as f64;
                        re += *s as f64 * ph.cos();
                        im += *s as f64 * ph.sin();
                    }
                    re * re + im * im
                })
                .sum()
        };
        let hi_x = band(&x[800..15200], 900.0, 2000.0) / band(&x[800..15200], 0.0, 900.0);
        let hi_y = band(&y[800..15200], 900.0, 2000.0) / band(&y[800..15200], 0.0, 900.0);
        assert!(hi_y > 1.5 * hi_x, "high/low band ratio {hi_x} -> {hi_y}");
    }
}
