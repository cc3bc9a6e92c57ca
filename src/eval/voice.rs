//! Measuring voice redaction against labelled speech: in 30 ms frames, which frames of the
//! labelled speech were left audible, how much of the speech's energy is left, and how much of
//! the time outside speech was muted.
//!
//! A frame is *speech* when at least half of it lies inside a labelled interval and *other*
//! when none of it does (frames that straddle an edge count as neither). A frame counts as
//! **muted** when the output's energy in it is at least 20 dB under the input's, and as
//! **audible** otherwise. Frames whose input is digital silence count as neither. This is the
//! measure of `voice.mode = mute` (the default): a bleep or a disguise keeps the frame's energy
//! and reads as audible here.
//!
//! Owns: the voice measures. Must not touch: the redact pipeline (it only decodes finished
//! files).

use std::path::Path;

use serde::Serialize;

use crate::media::MediaError;

/// Length of one measured frame (seconds).
pub const FRAME_S: f64 = 0.03;
/// A frame is muted when the output keeps at most this share of the input's energy (-20 dB).
pub const MUTED_AT_MOST: f64 = 0.01;
/// Frames farther than this from labelled speech are *far* (seconds): muting there is not the
/// redaction's padding or a late end but sound muted for itself.
pub const FAR_S: f64 = 0.5;
/// Mean square under which an input frame counts as digital silence.
const SILENT_MS: f64 = 1e-10;

/// The voice side of one clip's evaluation.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct VoiceReport {
    /// Labelled speech (s).
    pub speech_s: f64,
    pub speech_frames: u64,
    /// Speech frames the output left audible, and their share.
    pub speech_audible: u64,
    pub speech_audible_rate: f64,
    /// The longest run of audible speech (s) and where it starts (s).
    pub longest_audible_s: f64,
    pub longest_audible_at: Option<f64>,
    /// Share of the labelled speech's energy the output kept.
    pub speech_energy_left: f64,
    /// Frames outside speech, the ones muted, and their share.
    pub other_frames: u64,
    pub other_muted: u64,
    pub other_muted_rate: f64,
    /// The same for the frames more than [`FAR_S`] from labelled speech.
    pub far_frames: u64,
    pub far_muted: u64,
    pub far_muted_rate: f64,
}

/// Mean square of `x` (sampled at `rate`) in each [`FRAME_S`] frame of `0..frames`.
fn frame_power(x: &[f32], rate: u32, frames: usize) -> Vec<f64> {
    (0..frames)
        .map(|k| {
            let a = ((k as f64 * FRAME_S) * f64::from(rate)).round() as usize;
            let b = (((k + 1) as f64 * FRAME_S) * f64::from(rate)).round() as usize;
            let s = &x[a.min(x.len())..b.min(x.len())];
            if s.is_empty() {
                0.0
            } else {
                s.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / s.len() as f64
            }
        })
        .collect()
}

/// Share of frame `k` inside the labelled intervals.
fn speech_share(speech: &[[f64; 2]], k: usize) -> f64 {
    let (a, b) = (k as f64 * FRAME_S, (k + 1) as f64 * FRAME_S);
    speech
        .iter()
        .map(|s| (s[1].min(b) - s[0].max(a)).max(0.0))
        .sum::<f64>()
        / FRAME_S
}

/// Whether frame `k` lies more than [`FAR_S`] from every labelled interval.
fn far_from_speech(speech: &[[f64; 2]], k: usize) -> bool {
    let (a, b) = (k as f64 * FRAME_S, (k + 1) as f64 * FRAME_S);
    speech
        .iter()
        .all(|s| b <= s[0] - FAR_S || a >= s[1] + FAR_S)
}

/// Compares decoded mono audio of the input and the output against the labelled speech.
pub fn measure(input: (&[f32], u32), output: (&[f32], u32), speech: &[[f64; 2]]) -> VoiceReport {
    let dur = input.0.len() as f64 / f64::from(input.1.max(1));
    let frames = (dur / FRAME_S).floor() as usize;
    let pin = frame_power(input.0, input.1, frames);
    let pout = frame_power(output.0, output.1, frames);
    let mut r = VoiceReport {
        speech_s: speech.iter().map(|s| (s[1] - s[0]).max(0.0)).sum(),
        ..VoiceReport::default()
    };
    let (mut e_in, mut e_out) = (0.0, 0.0);
    let (mut run, mut run_from) = (0usize, 0usize);
    for k in 0..frames {
        let share = speech_share(speech, k);
        let silent = pin[k] < SILENT_MS;
        let muted = pout[k] <= MUTED_AT_MOST * pin[k];
        if share >= 0.5 {
            e_in += pin[k];
            e_out += pout[k];
            if silent {
                continue;
            }
            r.speech_frames += 1;
            if muted {
                run = 0;
            } else {
                r.speech_audible += 1;
                if run == 0 {
                    run_from = k;
                }
                run += 1;
                let secs = run as f64 * FRAME_S;
                if secs > r.longest_audible_s + 1e-9 {
                    r.longest_audible_s = secs;
                    r.longest_audible_at = Some(run_from as f64 * FRAME_S);
                }
            }
        } else if share <= 0.0 && !silent {
            r.other_frames += 1;
            if muted {
                r.other_muted += 1;
            }
            if far_from_speech(speech, k) {
                r.far_frames += 1;
                if muted {
                    r.far_muted += 1;
                }
            }
        }
    }
    let rate = |n: u64, d: u64| if d > 0 { n as f64 / d as f64 } else { 0.0 };
    r.speech_audible_rate = rate(r.speech_audible, r.speech_frames);
    r.other_muted_rate = rate(r.other_muted, r.other_frames);
    r.far_muted_rate = rate(r.far_muted, r.far_frames);
    r.speech_energy_left = if e_in > 0.0 { e_out / e_in } else { 0.0 };
    r
}

/// Decodes `input` and `output` and measures them against the labelled speech.
pub fn evaluate(
    input: &Path,
    output: &Path,
    speech: &[[f64; 2]],
) -> Result<VoiceReport, MediaError> {
    let (a, ra) = super::decode_audio(input)?;
    let (b, rb) = super::decode_audio(output)?;
    if a.is_empty() || ra == 0 {
        return Err(MediaError::NoStreams {
            path: input.to_path_buf(),
        });
    }
    if b.is_empty() || rb == 0 {
        return Err(MediaError::NoStreams {
            path: output.to_path_buf(),
        });
    }
    Ok(measure((&a, ra), (&b, rb), speech))
}

/// The voice figures of a group of clips.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct VoiceSummary {
    /// The group: a condition, an SNR (`10 dB`), `all (tune)`, `all (holdout)` or `all`.
    pub group: String,
    pub clips: usize,
    pub speech_frames: u64,
    pub speech_audible: u64,
    /// Audible speech frames over all speech frames of the group.
    pub speech_audible_rate: f64,
    /// The mean of the clips' audible shares (the "on average").
    pub mean_clip_audible_rate: f64,
    /// The worst clip's audible share, and which clip.
    pub worst_clip_audible_rate: f64,
    pub worst_clip: Option<String>,
    pub longest_audible_s: f64,
    /// Energy of the speech left over all of it.
    pub speech_energy_left: f64,
    /// Time outside speech muted: over the group, and the worst clip's.
    pub other_muted_rate: f64,
    pub worst_other_muted_rate: f64,
    /// The same for time far from speech.
    pub far_muted_rate: f64,
    pub worst_far_muted_rate: f64,
    pub errors: usize,
}

impl VoiceSummary {
    /// Each clip comes with whether its time outside speech counts for the muted figures
    /// (not where the "noise" is itself speech, as babble is, nor where it is silence).
    pub fn of<'a>(
        group: &str,
        clips: impl IntoIterator<Item = (&'a str, Option<&'a VoiceReport>, bool)>,
    ) -> VoiceSummary {
        let mut s = VoiceSummary {
            group: group.to_string(),
            ..VoiceSummary::default()
        };
        let (mut e_in, mut e_out, mut other, mut muted, mut rates) = (0.0, 0.0, 0, 0, 0.0);
        let (mut far, mut far_muted) = (0, 0);
        for (name, r, muted_counts) in clips {
            s.clips += 1;
            let Some(r) = r else {
                s.errors += 1;
                continue;
            };
            s.speech_frames += r.speech_frames;
            s.speech_audible += r.speech_audible;
            rates += r.speech_audible_rate;
            if r.speech_audible_rate > s.worst_clip_audible_rate || s.worst_clip.is_none() {
                s.worst_clip_audible_rate = r.speech_audible_rate;
                s.worst_clip = Some(name.to_string());
            }
            s.longest_audible_s = s.longest_audible_s.max(r.longest_audible_s);
            e_in += r.speech_s;
            e_out += r.speech_s * r.speech_energy_left;
            if !muted_counts {
                continue;
            }
            other += r.other_frames;
            muted += r.other_muted;
            s.worst_other_muted_rate = s.worst_other_muted_rate.max(r.other_muted_rate);
            far += r.far_frames;
            far_muted += r.far_muted;
            s.worst_far_muted_rate = s.worst_far_muted_rate.max(r.far_muted_rate);
        }
        let done = s.clips - s.errors;
        if done > 0 {
            s.mean_clip_audible_rate = rates / done as f64;
        }
        if s.speech_frames > 0 {
            s.speech_audible_rate = s.speech_audible as f64 / s.speech_frames as f64;
        }
        if e_in > 0.0 {
            s.speech_energy_left = e_out / e_in;
        }
        if other > 0 {
            s.other_muted_rate = muted as f64 / other as f64;
        }
        if far > 0 {
            s.far_muted_rate = far_muted as f64 / far as f64;
        }
        s
    }
}

/// The voice table `obscura eval` prints for a folder.
pub fn table(rows: &[VoiceSummary]) -> String {
    let mut t = format!(
        "{:<16} {:>5} {:>8} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}  worst clip\n",
        "voice",
        "clips",
        "speech s",
        "audible%",
        "clip avg%",
        "clip max%",
        "run max",
        "energy%",
        "muted%",
        "far mut%"
    );
    for s in rows {
        t.push_str(&format!(
            "{:<16} {:>5} {:>8.1} {:>9.2} {:>9.2} {:>10.2} {:>8.2}s {:>9.2} {:>9.2} {:>9.2}  {}{}\n",
            s.group,
            s.clips,
            s.speech_frames as f64 * FRAME_S,
            100.0 * s.speech_audible_rate,
            100.0 * s.mean_clip_audible_rate,
            100.0 * s.worst_clip_audible_rate,
            s.longest_audible_s,
            100.0 * s.speech_energy_left,
            100.0 * s.worst_other_muted_rate,
            100.0 * s.worst_far_muted_rate,
            s.worst_clip.as_deref().unwrap_or("-"),
            if s.errors > 0 {
                format!("  ({} not evaluated)", s.errors)
            } else {
                String::new()
            }
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(secs: f64, rate: u32) -> Vec<f32> {
        (0..(secs * f64::from(rate)) as usize)
            .map(|i| 0.3 * (i as f32 * 0.05).sin())
            .collect()
    }

    #[test]
    fn untouched_speech_is_all_audible_and_a_muted_span_is_not() {
        let x = tone(3.0, 16_000);
        let speech = [[1.0, 2.0]];
        let r = measure((&x, 16_000), (&x, 16_000), &speech);
        assert_eq!(r.speech_audible, r.speech_frames);
        assert!(r.speech_frames >= 32, "{r:?}");
        assert!((r.speech_energy_left - 1.0).abs() < 1e-9);
        assert_eq!(r.other_muted, 0);
        assert!((r.longest_audible_s - 1.0).abs() < 0.07, "{r:?}");

        // Muted from 1.5 s to the end: half of the speech is left, and a second of other.
        let mut y = x.clone();
        y[24_000..].iter_mut().for_each(|v| *v = 0.0);
        let r = measure((&x, 16_000), (&y, 16_000), &speech);
        assert!((r.speech_audible_rate - 0.5).abs() < 0.05, "{r:?}");
        assert!((r.speech_energy_left - 0.5).abs() < 0.05, "{r:?}");
        assert!((r.other_muted_rate - 0.5).abs() < 0.05, "{r:?}");
        // Far from speech: 0-0.5 s (kept) and 2.5-3 s (muted).
        assert!((r.far_muted_rate - 0.5).abs() < 0.07, "{r:?}");
        // The frame 0.99-1.02 s is two-thirds speech: the run starts there.
        assert!((r.longest_audible_at.unwrap() - 0.99).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn an_output_at_another_rate_is_measured_in_time_not_in_samples() {
        let x = tone(2.0, 8_000);
        let y = tone(2.0, 48_000);
        let r = measure((&x, 8_000), (&y, 48_000), &[[0.5, 1.5]]);
        assert_eq!(r.speech_audible, r.speech_frames);
        let z = vec![0.0; 96_000];
        let r = measure((&x, 8_000), (&z, 48_000), &[[0.5, 1.5]]);
        assert_eq!(r.speech_audible, 0);
        assert_eq!(r.other_muted, r.other_frames);
    }

    #[test]
    fn a_summary_pools_frames_and_keeps_the_worst_clip() {
        let a = VoiceReport {
            speech_s: 1.0,
            speech_frames: 100,
            speech_audible: 10,
            speech_audible_rate: 0.1,
            speech_energy_left: 0.2,
            other_frames: 50,
            other_muted: 5,
            other_muted_rate: 0.1,
            ..VoiceReport::default()
        };
        let b = VoiceReport {
            speech_s: 3.0,
            speech_frames: 300,
            speech_audible: 0,
            other_frames: 50,
            ..VoiceReport::default()
        };
        let babble = VoiceReport {
            other_frames: 100,
            other_muted: 100,
            other_muted_rate: 1.0,
            ..VoiceReport::default()
        };
        let s = VoiceSummary::of(
            "x",
            [
                ("a", Some(&a), true),
                ("b", Some(&b), true),
                ("c", None, true),
                ("babble", Some(&babble), false),
            ],
        );
        assert_eq!((s.clips, s.errors), (4, 1));
        assert!((s.speech_audible_rate - 0.025).abs() < 1e-12);
        assert!((s.mean_clip_audible_rate - 0.1 / 3.0).abs() < 1e-12);
        assert_eq!(s.worst_clip.as_deref(), Some("a"));
        assert!((s.speech_energy_left - 0.05).abs() < 1e-12);
        assert!((s.other_muted_rate - 0.05).abs() < 1e-12);
        assert!((s.worst_other_muted_rate - 0.1).abs() < 1e-12);
    }
}
