//! The voice stage: voice activity detection on the 16 kHz copy, and redaction of the
//! original-rate audio in sync with it.
//!
//! Both audio branches come from one decoder tee; this thread reads whichever has data
//! (never blocking on one while the other fills). Original audio is held back until the VAD
//! has seen far enough past it — padding plus the hysteresis' silence time — that no later
//! window can still turn it into speech; then it is redacted sample-accurately and handed to
//! the encoder. Held audio is bounded by that delay (about 0.4 s), so memory stays flat on
//! long files. If the VAD fails, the clip fails — or, when configured, everything from then on
//! is muted (fail closed either way).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, never, select};
use gstreamer as gst;
use gstreamer_audio as gst_audio;

use super::{FirstError, PipelineError, StageResults, buffer_end, internal};
use crate::detect::vad::{self, Segmenter, SegmenterConfig, Vad};
use crate::media::encode::AudioInput;
use crate::redact::audio::{McAdams, SpeechMask, VoiceMode, apply};

/// What the voice stage found.
#[derive(Debug, Default)]
pub(super) struct VoiceOutcome {
    pub segments: Vec<vad::Segment>,
    /// The VAD failed and the rest of the track was muted.
    pub vad_failed: bool,
    /// Time spent in the VAD, and seconds of audio it covered.
    pub vad_ms: f64,
    pub audio_s: f64,
}

pub(super) struct VoiceStage {
    pub input: PathBuf,
    pub mode: VoiceMode,
    pub main: Receiver<gst::Sample>,
    pub vad_rx: Option<Receiver<gst::Sample>>,
    pub vad: Option<Vad>,
    pub segmenter: SegmenterConfig,
    pub pad_s: f64,
    pub disguise_alpha: f64,
    pub mute_on_vad_failure: bool,
    pub out: Option<AudioInput>,
    pub error: FirstError,
    pub ticks: Arc<AtomicU64>,
    pub results: Arc<Mutex<StageResults>>,
}

/// An original-rate buffer waiting for the VAD to decide about it.
struct Held {
    buffer: gst::Buffer,
    caps: gst::Caps,
    t0: f64,
    rate: u32,
    channels: usize,
    frames: usize,
    /// Index (per channel) of its first sample in the stream.
    first: u64,
}

impl Held {
    fn end_s(&self) -> f64 {
        self.t0 + self.frames as f64 / self.rate as f64
    }
}

fn f32_samples(buffer: &gst::BufferRef) -> Option<Vec<f32>> {
    let map = buffer.map_readable().ok()?;
    Some(
        map.as_slice()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

impl VoiceStage {
    pub fn run(mut self) -> Result<(), PipelineError> {
        let _span = tracing::debug_span!("voice").entered();
        let needs_vad = self.mode.needs_vad() && self.vad.is_some();
        let mut seg: Option<Segmenter> = None;
        let mut vad_acc: Vec<f32> = Vec::with_capacity(2 * vad::WINDOW);
        // No VAD where one is needed (it could not be loaded and the configuration says to mute
        // then): the whole track counts as speech.
        let mut vad_failed = self.mode.needs_vad() && self.vad.is_none();
        let mut vad_done = !needs_vad || self.vad_rx.is_none();
        let mut main_done = false;
        let mut held: VecDeque<Held> = VecDeque::new();
        let mut next_first: u64 = 0;
        let mut disguisers: Vec<McAdams> = Vec::new();
        // Disguised samples per channel, and the stream index of each deque's front.
        let mut disguised: Vec<VecDeque<f32>> = Vec::new();
        let mut disguised_front: u64 = 0;
        let mut vad_time = Duration::ZERO;
        let mut audio_end: Option<gst::ClockTime> = None;
        let mut samples_out: u64 = 0;
        let mut audio_s = 0.0;
        // How far past a buffer the VAD must have seen before the buffer is final.
        // (A segment may start up to `onset_lookback_s` before the window that opened it.)
        let hold = self.pad_s
            + self.segmenter.min_silence_s
            + self.segmenter.onset_lookback_s
            + 2.0 * vad::WINDOW_S
            + 0.05;
        let vad_rx = self.vad_rx.clone();
        loop {
            if main_done && vad_done {
                break;
            }
            if self.error.is_set() {
                return Ok(());
            }
            let vad_chan = match (&vad_rx, vad_done) {
                (Some(r), false) => r.clone(),
                _ => never(),
            };
            let main_chan = if main_done {
                never()
            } else {
                self.main.clone()
            };
            select! {
                recv(vad_chan) -> m => match m {
                    Ok(s) => {
                        let Some(buf) = crate::media::decode::audio_buffer(&s) else { continue };
                        let buf = buf.as_ref();
                        let origin = buf.pts().map(|p| p.nseconds() as f64 / 1e9).unwrap_or(0.0);
                        let sg = seg.get_or_insert_with(|| Segmenter::new(self.segmenter, origin));
                        let Some(x) = f32_samples(buf) else { continue };
                        vad_acc.extend_from_slice(&x);
                        let t = Instant::now();
                        let r = run_windows(self.vad.as_mut(), &mut vad_acc, sg, false);
                        vad_time += t.elapsed();
                        if let Err(e) = r {
                            if !self.mute_on_vad_failure {
                                return Err(PipelineError::Detect { path: self.input.clone(), source: e });
                            }
                            tracing::error!(error = %e, "voice activity detection failed: muting the rest of the audio track");
                            vad_failed = true;
                            vad_done = true;
                        }
                    }
                    Err(_) => {
                        vad_done = true;
                        if let Some(sg) = seg.as_mut() {
                            let t = Instant::now();
                            let r = run_windows(self.vad.as_mut(), &mut vad_acc, sg, true);
                            vad_time += t.elapsed();
                            if let Err(e) = r {
                                if !self.mute_on_vad_failure {
                                    return Err(PipelineError::Detect { path: self.input.clone(), source: e });
                                }
                                vad_failed = true;
                            }
                        }
                    }
                },
                recv(main_chan) -> m => match m {
                    Ok(s) => {
                        let (Some(buffer), Some(caps)) = (crate::media::decode::audio_buffer(&s), s.caps_owned()) else { continue };
                        let info = gst_audio::AudioInfo::from_caps(&caps)
                            .map_err(|_| internal(&self.input, "audio caps are not raw F32 audio".into()))?;
                        let (rate, channels) = (info.rate(), info.channels() as usize);
                        let frames = buffer.size() / (4 * channels.max(1));
                        let t0 = buffer.pts().map(|p| p.nseconds() as f64 / 1e9).unwrap_or(next_first as f64 / rate.max(1) as f64);
                        audio_end = audio_end.max(buffer_end(buffer.as_ref()));
                        audio_s += frames as f64 / rate.max(1) as f64;
                        if self.mode == VoiceMode::Disguise {
                            if disguisers.len() != channels {
                                disguisers = (0..channels).map(|_| McAdams::new(rate, self.disguise_alpha)).collect();
                                disguised = vec![VecDeque::new(); channels];
                                disguised_front = next_first;
                            }
                            if let Some(x) = f32_samples(buffer.as_ref()) {
                                for (c, d) in disguisers.iter_mut().enumerate() {
                                    let ch: Vec<f32> = x.iter().skip(c).step_by(channels).copied().collect();
                                    disguised[c].extend(d.push(&ch));
                                }
                            }
                        }
                        held.push_back(Held { buffer, caps, t0, rate, channels, frames, first: next_first });
                        next_first += frames as u64;
                    }
                    Err(_) => {
                        main_done = true;
                        for (c, d) in disguisers.iter_mut().enumerate() {
                            disguised[c].extend(d.finish());
                        }
                    }
                },
            }
            let mask = current_mask(seg.as_ref(), vad_failed, self.pad_s);
            let decided_until = if vad_done || !needs_vad {
                f64::INFINITY
            } else {
                seg.as_ref()
                    .map(|s| s.seen_until())
                    .unwrap_or(f64::NEG_INFINITY)
            };
            let ctx = ReleaseCtx {
                input: &self.input,
                mode: if vad_failed {
                    VoiceMode::Mute
                } else {
                    self.mode
                },
                mask: &mask,
                decided_until,
                hold,
                all: main_done && vad_done,
            };
            if !release(
                &ctx,
                &mut held,
                &mut disguised,
                &mut disguised_front,
                &mut self.out,
                &mut samples_out,
                &self.ticks,
            )? {
                if self.error.is_set() {
                    return Ok(());
                }
                return Err(internal(
                    &self.input,
                    "the audio encoder refused a buffer".into(),
                ));
            }
        }
        // The last pass of the loop ran with both streams ended (`all`): nothing is held.
        debug_assert!(held.is_empty());
        if self.error.is_set() {
            return Ok(());
        }
        if let Some(out) = &self.out {
            out.end();
        }
        let segments = seg.map(|s| s.finish()).unwrap_or_default();
        if let Ok(mut r) = self.results.lock() {
            r.audio_end = audio_end;
            r.audio_samples = samples_out;
            r.voice = Some(VoiceOutcome {
                segments,
                vad_failed,
                vad_ms: vad_time.as_secs_f64() * 1e3,
                audio_s,
            });
        }
        Ok(())
    }
}

/// Runs the VAD on every complete window in `acc` (and, at the end, on the zero-padded rest).
fn run_windows(
    vad: Option<&mut Vad>,
    acc: &mut Vec<f32>,
    seg: &mut Segmenter,
    last: bool,
) -> Result<(), crate::detect::DetectError> {
    let Some(vad) = vad else {
        acc.clear();
        return Ok(());
    };
    if last && !acc.is_empty() && !acc.len().is_multiple_of(vad::WINDOW) {
        let pad = vad::WINDOW - acc.len() % vad::WINDOW;
        acc.extend(std::iter::repeat_n(0.0, pad));
    }
    let mut consumed = 0;
    for w in acc.chunks_exact(vad::WINDOW) {
        let win: &[f32; vad::WINDOW] = w.try_into().expect("exact chunk");
        seg.push(vad.window(win)?);
        consumed += vad::WINDOW;
    }
    acc.drain(..consumed);
    Ok(())
}

fn current_mask(seg: Option<&Segmenter>, vad_failed: bool, pad: f64) -> SpeechMask {
    if vad_failed {
        return SpeechMask::everything();
    }
    match seg {
        Some(s) => SpeechMask::new(s.segments().into_iter().map(|g| (g.start_s, g.end_s)), pad),
        None => SpeechMask::default(),
    }
}

struct ReleaseCtx<'a> {
    input: &'a std::path::Path,
    mode: VoiceMode,
    mask: &'a SpeechMask,
    decided_until: f64,
    hold: f64,
    all: bool,
}

/// Redacts and hands on every held buffer the VAD has decided about. Returns false when the
/// encoder refused a buffer.
fn release(
    ctx: &ReleaseCtx<'_>,
    held: &mut VecDeque<Held>,
    disguised: &mut [VecDeque<f32>],
    disguised_front: &mut u64,
    out: &mut Option<AudioInput>,
    samples_out: &mut u64,
    ticks: &AtomicU64,
) -> Result<bool, PipelineError> {
    while let Some(front) = held.front() {
        if !ctx.all && front.end_s() + ctx.hold > ctx.decided_until {
            break;
        }
        let disguise = ctx.mode == VoiceMode::Disguise;
        if disguise {
            let have = *disguised_front + disguised.first().map(|d| d.len()).unwrap_or(0) as u64;
            if have < front.first + front.frames as u64 && !ctx.all {
                break;
            }
        }
        let h = held.pop_front().expect("front exists");
        let end_s = h.end_s();
        let mut buffer = h.buffer;
        if ctx.mode.modifies_samples() && ctx.mask.touches(h.t0, end_s) {
            // Fail closed: a buffer that cannot be read or written is never passed on as it is.
            let unreadable = || PipelineError::Internal {
                path: ctx.input.to_path_buf(),
                message: "an audio buffer could not be mapped for redaction".into(),
            };
            let mut x = f32_samples(buffer.as_ref()).ok_or_else(unreadable)?;
            let dis: Option<Vec<f32>> = disguise.then(|| {
                let mut v = vec![0.0f32; x.len()];
                for (c, d) in disguised.iter().enumerate() {
                    let off = h.first.saturating_sub(*disguised_front) as usize;
                    for f in 0..h.frames {
                        v[f * h.channels + c] = d.get(off + f).copied().unwrap_or(0.0);
                    }
                }
                v
            });
            apply(
                ctx.mode,
                &mut x,
                h.channels,
                h.rate,
                h.t0,
                ctx.mask,
                dis.as_deref(),
            );
            let bm = buffer.make_mut();
            let mut map = bm.map_writable().map_err(|_| unreadable())?;
            for (dst, v) in map.as_mut_slice().chunks_exact_mut(4).zip(&x) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
            drop(map);
        }
        if disguise {
            // Drop disguised samples up to the end of this buffer.
            let upto = h.first + h.frames as u64;
            let n = upto.saturating_sub(*disguised_front) as usize;
            for d in disguised.iter_mut() {
                let k = n.min(d.len());
                d.drain(..k);
            }
            *disguised_front = (*disguised_front).max(upto);
        }
        *samples_out += h.frames as u64;
        ticks.fetch_add(1, Ordering::Relaxed);
        if let Some(o) = out.as_mut()
            && o.push(&h.caps, buffer).is_err()
        {
            return Ok(false);
        }
    }
    Ok(true)
}
