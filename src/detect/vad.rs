//! Voice activity detection: Silero VAD on ONNX Runtime, and the segmenter that turns its
//! per-window probabilities into speech segments with hysteresis.
//!
//! Silero (`silero_vad_16k_b1_static.onnx`): each call takes 64 samples of context (the end of
//! the previous window) + 512 new samples and the recurrent `state` [2,1,128] carried over; it
//! returns the speech probability of the 32 ms window. Port of `shared/models/tools/vad.py`.
//! The model is silero's own graph with the sample rate made a constant (16 kHz), its `If` on
//! the rate folded away and the shapes fixed: the same probabilities as `silero_vad.onnx` to
//! 2.4e-7, at ~0.10 instead of ~0.12 ms a window (ONNX Runtime, 1 thread; see models/README.md).
//!
//! Owns: the VAD session and segmenting. Must not touch: audio samples of the output (the
//! redactor applies the segments).

use ort::value::TensorRef;

use super::{DetectError, ModelFile, SessionOptions};

pub const SAMPLE_RATE: u32 = 16_000;
pub const WINDOW: usize = 512;
pub const CONTEXT: usize = 64;
/// Seconds per window.
pub const WINDOW_S: f64 = WINDOW as f64 / SAMPLE_RATE as f64;

/// A Silero VAD session with its recurrent state.
pub struct Vad {
    session: super::runtime::PooledSession,
    model: ModelFile,
    state: Vec<f32>,
    context: [f32; CONTEXT],
    input: Vec<f32>,
}

impl Vad {
    /// Finds the Silero VAD model (in `models_dir`, or the default places) and loads it.
    pub fn load(
        models_dir: Option<&std::path::Path>,
        opts: &SessionOptions,
    ) -> Result<Vad, DetectError> {
        let model = ModelFile::locate(super::ModelKind::SileroVad, models_dir)?;
        Vad::new(model, opts)
    }

    /// Loads the model on one thread (`build_session` checks its sha256 first).
    pub fn new(model: ModelFile, opts: &SessionOptions) -> Result<Vad, DetectError> {
        let opts = SessionOptions {
            intra_threads: 1,
            inter_threads: 1,
            ..opts.clone()
        };
        let session = super::runtime::build_session(&model, &opts)?;
        Ok(Vad {
            session,
            model,
            state: vec![0.0; 2 * 128],
            context: [0.0; CONTEXT],
            input: Vec::with_capacity(CONTEXT + WINDOW),
        })
    }

    pub fn model(&self) -> &ModelFile {
        &self.model
    }

    /// Speech probability of the next 512-sample window (16 kHz mono, -1..1).
    pub fn window(&mut self, samples: &[f32; WINDOW]) -> Result<f32, DetectError> {
        let err = |e: ort::Error| DetectError::Inference {
            model: "silero-vad".into(),
            reason: e.to_string(),
        };
        self.input.clear();
        self.input.extend_from_slice(&self.context);
        self.input.extend_from_slice(samples);
        let input = TensorRef::from_array_view(([1usize, CONTEXT + WINDOW], self.input.as_slice()))
            .map_err(err)?;
        let state =
            TensorRef::from_array_view(([2usize, 1, 128], self.state.as_slice())).map_err(err)?;
        let out = self
            .session
            .run(ort::inputs!["input" => input, "state" => state])
            .map_err(err)?;
        let p = out["output"]
            .try_extract_tensor::<f32>()
            .map_err(err)?
            .1
            .first()
            .copied()
            .unwrap_or(0.0);
        let new_state = out["stateN"].try_extract_tensor::<f32>().map_err(err)?.1;
        if new_state.len() == self.state.len() {
            self.state.copy_from_slice(new_state);
        }
        self.context.copy_from_slice(&samples[WINDOW - CONTEXT..]);
        if !p.is_finite() {
            return Err(DetectError::Inference {
                model: "silero-vad".into(),
                reason: "probability is not a number".into(),
            });
        }
        Ok(p)
    }
}

/// Segmenting settings (silero's `get_speech_timestamps` logic, minus its padding, which the
/// redactor applies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmenterConfig {
    /// A window at or above this probability starts (or continues) speech.
    pub threshold: f32,
    /// Speech ends after the probability stays below this this long (`min_silence_s`).
    pub end_threshold: f32,
    /// Speech ends after the probability stays below `end_threshold` this long (seconds).
    pub min_silence_s: f64,
    /// Segments shorter than this are dropped (seconds); 0 keeps every burst (recall first).
    pub min_speech_s: f64,
    /// A segment starts earlier, at the first of the windows just before it that stay at or
    /// above `end_threshold` without a break, reaching back at most this far (seconds): the
    /// onset of an utterance, which the VAD scores low until it has heard more of it.
    pub onset_lookback_s: f64,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            threshold: 0.5,
            end_threshold: 0.35,
            min_silence_s: 0.1,
            min_speech_s: 0.0,
            onset_lookback_s: 0.0,
        }
    }
}

impl SegmenterConfig {
    /// Windows of look-back kept.
    fn lookback_windows(&self) -> usize {
        (self.onset_lookback_s / WINDOW_S).ceil().max(0.0) as usize
    }
}

/// A closed or open speech segment in seconds of the 16 kHz stream's own time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
    /// Highest window probability inside.
    pub score: f32,
}

/// Streaming segmenter with hysteresis: enter speech at `threshold`, leave it only after
/// `min_silence_s` below `end_threshold`; a new segment reaches back over the rise before it
/// (`onset_lookback_s`).
#[derive(Debug)]
pub struct Segmenter {
    cfg: SegmenterConfig,
    windows: u64,
    /// Time (s) of the first window of the stream (the stream may not start at 0).
    origin_s: f64,
    current: Option<Segment>,
    silence_since: Option<f64>,
    closed: Vec<Segment>,
    /// The probabilities of the last windows outside speech, newest last (onset look-back).
    recent: std::collections::VecDeque<f32>,
}

impl Segmenter {
    pub fn new(cfg: SegmenterConfig, origin_s: f64) -> Self {
        Segmenter {
            cfg,
            windows: 0,
            origin_s,
            current: None,
            silence_since: None,
            closed: Vec::new(),
            recent: std::collections::VecDeque::new(),
        }
    }

    /// Feeds the probability of the next window.
    pub fn push(&mut self, p: f32) {
        let t = self.origin_s + self.windows as f64 * WINDOW_S;
        self.windows += 1;
        let neg = self.cfg.end_threshold;
        match self.current.as_mut() {
            None => {
                if p >= self.cfg.threshold {
                    // Back over the unbroken run of windows at or above the end threshold
                    // (not past the end of the last segment: those windows are in `recent`
                    // only since it closed).
                    let back = self.recent.iter().rev().take_while(|&&q| q >= neg).count();
                    self.recent.clear();
                    self.current = Some(Segment {
                        start_s: t - back as f64 * WINDOW_S,
                        end_s: t + WINDOW_S,
                        score: p,
                    });
                    self.silence_since = None;
                } else {
                    let keep = self.cfg.lookback_windows();
                    if keep > 0 {
                        if self.recent.len() == keep {
                            self.recent.pop_front();
                        }
                        self.recent.push_back(p);
                    }
                }
            }
            Some(cur) => {
                if p < neg {
                    let since = *self.silence_since.get_or_insert(t);
                    if t + WINDOW_S - since >= self.cfg.min_silence_s {
                        cur.end_s = since;
                        let done = *cur;
                        self.current = None;
                        self.silence_since = None;
                        self.recent.clear();
                        if done.end_s - done.start_s >= self.cfg.min_speech_s {
                            self.closed.push(done);
                        }
                    }
                } else {
                    if p >= self.cfg.threshold {
                        self.silence_since = None;
                    }
                    cur.end_s = t + WINDOW_S;
                    cur.score = cur.score.max(p);
                }
            }
        }
    }

    /// Time (s) up to which windows have been seen.
    pub fn seen_until(&self) -> f64 {
        self.origin_s + self.windows as f64 * WINDOW_S
    }

    /// Segments so far, the open one included (extended to what has been seen): conservative
    /// for redaction, since speech that may still continue counts as speech.
    pub fn segments(&self) -> Vec<Segment> {
        let mut v = self.closed.clone();
        if let Some(c) = self.current {
            v.push(Segment {
                end_s: self.seen_until().max(c.end_s),
                ..c
            });
        }
        v
    }

    /// Ends the stream and returns every segment.
    pub fn finish(mut self) -> Vec<Segment> {
        if let Some(c) = self.current.take()
            && c.end_s - c.start_s >= self.cfg.min_speech_s
        {
            self.closed.push(c);
        }
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(probs: &[f32]) -> Vec<Segment> {
        let mut s = Segmenter::new(SegmenterConfig::default(), 0.0);
        for &p in probs {
            s.push(p);
        }
        s.finish()
    }

    #[test]
    fn no_speech_no_segment() {
        assert!(run(&[0.01; 100]).is_empty());
        assert!(run(&[0.49; 100]).is_empty());
    }

    #[test]
    fn a_speech_run_becomes_one_segment_with_window_accurate_bounds() {
        let mut p = vec![0.0f32; 10];
        p.extend(vec![0.9; 20]);
        p.extend(vec![0.0; 20]);
        let s = run(&p);
        assert_eq!(s.len(), 1);
        assert!((s[0].start_s - 10.0 * WINDOW_S).abs() < 1e-9);
        assert!((s[0].end_s - 30.0 * WINDOW_S).abs() < 1e-9);
        assert!((s[0].score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn hysteresis_bridges_dips_shorter_than_min_silence() {
        // 2 windows (64 ms) below the lower threshold inside speech: not a break.
        let mut p = vec![0.9f32; 10];
        p.extend([0.1, 0.1]);
        p.extend(vec![0.9; 10]);
        // 0.4 is between the thresholds: continues speech once started.
        p.extend(vec![0.4; 5]);
        p.extend(vec![0.0; 10]);
        let s = run(&p);
        assert_eq!(s.len(), 1, "{s:?}");
        assert!((s[0].end_s - 27.0 * WINDOW_S).abs() < 1e-9);
    }

    #[test]
    fn the_onset_look_back_reaches_the_start_of_the_rise_and_no_further() {
        let cfg = SegmenterConfig {
            onset_lookback_s: 0.2,
            ..SegmenterConfig::default()
        };
        let run = |p: &[f32]| {
            let mut s = Segmenter::new(cfg, 0.0);
            p.iter().for_each(|&x| s.push(x));
            s.finish()
        };
        // Rising for 3 windows (0.4) before crossing 0.5 at window 13: starts at 10.
        let mut p = vec![0.0f32; 10];
        p.extend([0.4, 0.4, 0.4]);
        p.extend(vec![0.9; 10]);
        p.extend(vec![0.0; 10]);
        let s = run(&p);
        assert!((s[0].start_s - 10.0 * WINDOW_S).abs() < 1e-9, "{s:?}");
        // A rise longer than the look-back: 0.2 s is 7 windows back.
        let mut p = vec![0.0f32; 5];
        p.extend(vec![0.4; 20]);
        p.extend(vec![0.9; 10]);
        let s = run(&p);
        assert!((s[0].start_s - 18.0 * WINDOW_S).abs() < 1e-9, "{s:?}");
        // Off by default.
        let mut d = Segmenter::new(SegmenterConfig::default(), 0.0);
        p.iter().for_each(|&x| d.push(x));
        assert!((d.finish()[0].start_s - 25.0 * WINDOW_S).abs() < 1e-9);
    }

    #[test]
    fn open_segment_is_reported_while_streaming() {
        let mut s = Segmenter::new(SegmenterConfig::default(), 1.0);
        for _ in 0..5 {
            s.push(0.0);
        }
        for _ in 0..5 {
            s.push(0.95);
        }
        let segs = s.segments();
        assert_eq!(segs.len(), 1);
        assert!((segs[0].start_s - (1.0 + 5.0 * WINDOW_S)).abs() < 1e-9);
        assert!((segs[0].end_s - s.seen_until()).abs() < 1e-9);
    }
}
