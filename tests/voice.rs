//! Voices: Silero VAD on real recorded speech (LibriVox, labelled by pocketsphinx) and on
//! synthetic speech, each voice mode measured on the decoded output, audio-only formats, the
//! audio track of a video, and failures.

mod common;

use std::path::{Path, PathBuf};

use obscura::eval::{decode_audio, energy};
use obscura::pipeline::{Control, Job, Mode, redact_file, run};
use obscura::redact::audio::VoiceMode;

/// LibriVox clips placed at 1.0 s and 10.0 s in librivox_gaps_16k.wav (labels from the .lab
/// files, offset by the silence before each clip).
const GAPS_SPEECH: [(f64, f64); 2] = [(1.236, 7.762), (10.351, 12.874)];
/// Silero's segment boundaries differ from the hand labels by up to ~0.11 s (its onset
/// look-back and the lower end threshold reach a little further out), and the redactor pads
/// segments by 0.3 s: "outside speech" is measured beyond label ± (0.3 + 0.2) s.
const OUTSIDE_MARGIN: f64 = 0.5;

fn audio(name: &str) -> PathBuf {
    common::sample(&format!("audio/{name}"))
}

fn cfg(mode: VoiceMode) -> obscura::config::Config {
    let mut c = common::config();
    c.voice.mode = mode;
    c
}

fn redact_to(
    input: &Path,
    dir: &Path,
    out_name: &str,
    mode: VoiceMode,
) -> obscura::pipeline::Outcome {
    let job = Job {
        input: input.to_path_buf(),
        output: dir.join(out_name),
        sidecar: None,
    };
    redact_file(&job, &cfg(mode), &Control::default()).expect("redaction succeeds")
}

fn inside(labels: &[(f64, f64)]) -> impl Fn(f64) -> bool + '_ {
    move |t| labels.iter().any(|&(a, b)| t >= a && t < b)
}

fn outside(labels: &[(f64, f64)], margin: f64) -> impl Fn(f64) -> bool + '_ {
    move |t| {
        !labels
            .iter()
            .any(|&(a, b)| t >= a - margin && t < b + margin)
    }
}

/// Energy ratios (output / input) inside the labels and outside them (beyond the margin).
fn ratios(input: &Path, output: &Path, labels: &[(f64, f64)]) -> (f64, f64) {
    ratios_with(input, output, labels, OUTSIDE_MARGIN)
}

fn ratios_with(input: &Path, output: &Path, labels: &[(f64, f64)], margin: f64) -> (f64, f64) {
    let (a, ra) = decode_audio(input).unwrap();
    let (b, rb) = decode_audio(output).unwrap();
    assert_eq!(ra, rb, "sample rate kept");
    let n = a.len().min(b.len());
    assert!(
        n as f64 >= a.len() as f64 - 0.05 * ra as f64,
        "duration kept: {} vs {}",
        b.len(),
        a.len()
    );
    let (a, b) = (&a[..n], &b[..n]);
    let inner = energy(b, rb, inside(labels)) / energy(a, ra, inside(labels)).max(1e-12);
    let outer =
        energy(b, rb, outside(labels, margin)) / energy(a, ra, outside(labels, margin)).max(1e-12);
    (inner, outer)
}

/// librivox_gaps with a quiet 300 Hz hum over the whole file, so that "outside speech" holds
/// real energy to preserve (the file's gaps are digital silence).
fn gaps_with_hum(dir: &Path) -> PathBuf {
    let (x, rate) = decode_audio(&audio("librivox_gaps_16k.wav")).unwrap();
    let y: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v + 0.05 * (2.0 * std::f32::consts::PI * 300.0 * i as f32 / rate as f32).sin()
        })
        .collect();
    let p = dir.join("gaps_hum.wav");
    common::write_wav(&p, &y, rate);
    p
}

#[test]
fn mute_removes_real_speech_and_keeps_the_rest() {
    let dir = common::scratch();
    let input = gaps_with_hum(dir.path());
    let out = redact_to(&input, dir.path(), "muted.wav", VoiceMode::Mute);
    let (inner, outer) = ratios(&input, &out.output, &GAPS_SPEECH);
    println!("mute: inside {inner:.6}, outside {outer:.4}");
    assert!(inner <= 0.01, "energy left inside speech: {inner}");
    assert!(outer >= 0.95, "energy kept outside speech: {outer}");
    let v = out.sidecar.voice.as_ref().unwrap();
    assert_eq!(v.mode, "mute");
    // Two recordings; the hum may split one at a pause.
    assert!((2..=4).contains(&v.segments.len()), "{:?}", v.segments);
    assert!((out.sidecar.totals.speech_s - 9.2).abs() < 0.5);
    assert_eq!(
        v.model_sha256,
        "6dcffbade0d5f1d4fc2e56719d476a5469588d2c3ce2154c1231d3664404de4a"
    );
    assert_eq!(out.sidecar.output.container, "wav");
    assert!(
        out.sidecar.detector.is_none(),
        "no face detector for audio-only input"
    );
}

#[test]
fn segments_match_the_labels_of_every_recording() {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(audio("expected_vad.json")).unwrap()).unwrap();
    let dir = common::scratch();
    for (name, labels) in [
        (
            "sense_and_sensibility_01_austen_64kb-0870.wav",
            vec![(0.236, 6.762)],
        ),
        (
            "sense_and_sensibility_01_austen_64kb-0880.wav",
            vec![(0.251, 2.774)],
        ),
        (
            "speech_en-us_fast_200wpm_pauses.wav",
            vec![(1.0, 3.4), (5.4, 7.96)],
        ),
        ("librivox_gaps_16k.wav", GAPS_SPEECH.to_vec()),
    ] {
        let out = redact_to(
            &audio(name),
            dir.path(),
            &format!("m-{name}"),
            VoiceMode::Mute,
        );
        let segs = &out.sidecar.voice.as_ref().unwrap().segments;
        // The same segments as the reference Python decoder (on silero_vad.onnx, the graph
        // the static model was derived from).
        let want = expected[name]["segments_s"].as_array().unwrap();
        let reference: Vec<(f64, f64)> = want
            .iter()
            .map(|s| (s[0].as_f64().unwrap(), s[1].as_f64().unwrap()))
            .collect();
        let merged: Vec<(f64, f64)> = segs.iter().map(|s| (s.start_s, s.end_s)).collect();
        for (a, b) in &reference {
            assert!(
                merged
                    .iter()
                    .any(|(c, d)| (c - a).abs() < 0.05 && (d - b).abs() < 0.05)
                    || merged.iter().any(|(c, d)| c <= a && d >= b),
                "{name}: reference segment {a}-{b} not found in {merged:?}"
            );
        }
        let (inner, _) = ratios(&audio(name), &out.output, &labels);
        println!("{name}: inside {inner:.6}");
        assert!(inner <= 0.01, "{name}: energy left inside speech {inner}");
    }
}

#[test]
fn tone_noise_and_silence_have_no_speech_and_pass_unchanged() {
    let dir = common::scratch();
    for name in [
        "tone_440hz_2s_16k.wav",
        "white_noise_2s_16k.wav",
        "silence_2s_16k.wav",
    ] {
        let out = redact_to(
            &audio(name),
            dir.path(),
            &format!("o-{name}"),
            VoiceMode::Mute,
        );
        assert!(
            out.sidecar.voice.as_ref().unwrap().segments.is_empty(),
            "{name}"
        );
        let (a, _) = decode_audio(&audio(name)).unwrap();
        let (b, _) = decode_audio(&out.output).unwrap();
        assert_eq!(a, b, "{name}: no sample may change");
    }
}

#[test]
fn bleep_replaces_speech_with_the_tone() {
    let dir = common::scratch();
    let input = gaps_with_hum(dir.path());
    let out = redact_to(&input, dir.path(), "bleep.wav", VoiceMode::Bleep);
    let (b, rate) = decode_audio(&out.output).unwrap();
    // Inside the first labelled interval: a 1 kHz tone at about 0.2 amplitude.
    let seg: Vec<f32> = b[(2.0 * rate as f64) as usize..(7.0 * rate as f64) as usize].to_vec();
    let zc = seg
        .windows(2)
        .filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0))
        .count();
    let freq = zc as f64 / 2.0 / 5.0;
    assert!((freq - 1000.0).abs() < 20.0, "tone at {freq} Hz");
    let peak = seg.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!((0.15..0.25).contains(&peak), "tone level {peak}");
    let (_, outer) = ratios(&input, &out.output, &GAPS_SPEECH);
    assert!(outer >= 0.95, "outside kept: {outer}");
}

#[test]
fn disguise_moves_the_formants_and_keeps_speech_energy() {
    let dir = common::scratch();
    let input = audio("sense_and_sensibility_01_austen_64kb-0870.wav");
    let out = redact_to(&input, dir.path(), "disguised.wav", VoiceMode::Disguise);
    let (a, rate) = decode_audio(&input).unwrap();
    let (b, _) = decode_audio(&out.output).unwrap();
    let labels = [(0.236, 6.762)];
    let ratio = energy(&b, rate, inside(&labels)) / energy(&a, rate, inside(&labels));
    assert!((0.5..2.0).contains(&ratio), "speech energy ratio {ratio}");
    // Spectral envelope change: mean log-spectral distance over 32 ms frames of speech.
    let lsd = log_spectral_distance(&a, &b, rate, 0.5, 6.5);
    println!("disguise: energy ratio {ratio:.3}, log-spectral distance {lsd:.2} dB");
    assert!(lsd > 4.0, "the voice must change measurably: {lsd} dB");
    // Not a mute: the speech is still there, loud.
    assert!(ratio > 0.5);
}

/// Mean over frames of the RMS difference (dB) between the two log power spectra.
fn log_spectral_distance(a: &[f32], b: &[f32], rate: u32, from: f64, to: f64) -> f64 {
    let n = 512usize;
    let (s, e) = ((from * rate as f64) as usize, (to * rate as f64) as usize);
    let mut total = 0.0;
    let mut frames = 0;
    let mut i = s;
    while i + n <= e.min(a.len()).min(b.len()) {
        let spec = |x: &[f32]| -> Vec<f64> {
            (1..n / 2)
                .map(|k| {
                    let (mut re, mut im) = (0.0, 0.0);
                    for (j, v) in x.iter().enumerate() {
                        let w =
                            0.5 - 0.5 * (2.0 * std::f64::consts::PI * j as f64 / n as f64).cos();
                        let ph = 2.0 * std::f64::consts::PI * (k * j) as f64 / n as f64;
                        re += *v as f64 * w * ph.cos();
                        im += *v as f64 * w * ph.sin();
                    }
                    10.0 * (re * re + im * im + 1e-9).log10()
                })
                .collect()
        };
        let (sa, sb) = (spec(&a[i..i + n]), spec(&b[i..i + n]));
        let d = (sa
            .iter()
            .zip(&sb)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            / sa.len() as f64)
            .sqrt();
        total += d;
        frames += 1;
        i += 4 * n;
    }
    total / frames.max(1) as f64
}

#[test]
fn tag_changes_no_sample_and_records_the_segments() {
    let dir = common::scratch();
    let input = audio("librivox_gaps_16k.wav");
    let out = redact_to(&input, dir.path(), "tagged.wav", VoiceMode::Tag);
    let (a, _) = decode_audio(&input).unwrap();
    let (b, _) = decode_audio(&out.output).unwrap();
    assert_eq!(a, b);
    assert_eq!(out.sidecar.voice.as_ref().unwrap().segments.len(), 2);
}

#[test]
fn audio_only_formats_come_out_in_their_own_family_and_muted() {
    let dir = common::scratch();
    let input = gaps_with_hum(dir.path());
    for (ext, container) in [
        ("flac", "flac"),
        ("mp3", "mp3"),
        ("m4a", "mp4"),
        ("ogg", "ogg"),
    ] {
        // Make the input in that format with a plain transcode (no voice processing).
        let encoded = dir.path().join(format!("in.{ext}"));
        let job = Job {
            input: input.clone(),
            output: encoded.clone(),
            sidecar: Some(dir.path().join(format!("in.{ext}.json"))),
        };
        run(
            &job,
            &common::config(),
            &Control::default(),
            Mode::TranscodeOnly,
        )
        .unwrap();
        // Redact it to an output with no telling extension: the family of the input is kept.
        let out = redact_to(
            &encoded,
            dir.path(),
            &format!("out-{ext}.bin"),
            VoiceMode::Mute,
        );
        assert_eq!(out.sidecar.output.container, container, "{ext}");
        // MP3 (LAME) adds an encoder delay of 1105 samples that no header here hides: each
        // MP3 generation moves the audio ~69 ms later at 16 kHz, mask and sound together.
        let margin = if ext == "mp3" {
            OUTSIDE_MARGIN + 0.15
        } else {
            OUTSIDE_MARGIN
        };
        let (inner, outer) = ratios_with(&encoded, &out.output, &GAPS_SPEECH, margin);
        println!(
            "{ext}: inside {inner:.5} outside {outer:.3} segments {:?}",
            out.sidecar.voice.as_ref().map(|v| &v.segments)
        );
        assert!(inner <= 0.01, "{ext}: energy left inside speech {inner}");
        // Lossy codecs re-encode the hum; most of its energy survives (LAME at 16 kHz loses
        // about 5% of the hum's amplitude per generation, measured with ffmpeg as well). The
        // MP3's first 0.1 s (LAME's start transient over the hum) scores 0.497 in Silero: over
        // the start threshold of 0.4, so 0.46 s of the hum's 2.5 s outside speech is muted
        // with its padding (0.85 with the old threshold of 0.5).
        let min = if ext == "mp3" { 0.7 } else { 0.9 };
        assert!(outer >= min, "{ext}: energy kept outside speech {outer}");
    }
}

#[test]
fn speech_in_a_video_is_muted_in_sync_with_the_picture() {
    let dir = common::scratch();
    let input = common::sample("city_pan.mp4");
    let muted = redact_to(&input, dir.path(), "muted.mp4", VoiceMode::Mute);
    let (inner, outer) = ratios(&input, &muted.output, &GAPS_SPEECH);
    println!("video: inside {inner:.6}, outside {outer}");
    assert!(inner <= 0.01, "energy left inside speech: {inner}");
    assert!(muted.sidecar.totals.tracks > 0, "faces are still redacted");
    assert_eq!(muted.sidecar.voice.as_ref().unwrap().segments.len(), 2);
    // Sync: the tagged output's audio lines up with the input's to the sample.
    let tagged = redact_to(&input, dir.path(), "tagged.mp4", VoiceMode::Tag);
    let (a, rate) = decode_audio(&input).unwrap();
    let (b, _) = decode_audio(&tagged.output).unwrap();
    let (s, e) = (2 * rate as usize, 6 * rate as usize);
    let lag = (-400i64..=400)
        .max_by(|&x, &y| {
            let c = |l: i64| -> f64 {
                (s..e)
                    .map(|i| a[i] as f64 * b[(i as i64 + l) as usize] as f64)
                    .sum()
            };
            c(x).total_cmp(&c(y))
        })
        .unwrap();
    assert!(lag.abs() <= 2, "audio offset {lag} samples");
}

#[test]
fn broken_audio_is_an_error_with_no_output() {
    let dir = common::scratch();
    // A WAV header that promises data, then garbage that is not RIFF at all.
    let mut bytes = std::fs::read(audio("tone_440hz_2s_16k.wav")).unwrap();
    bytes[0..4].copy_from_slice(b"XXXX");
    let p = dir.path().join("broken.wav");
    std::fs::write(&p, &bytes).unwrap();
    let out = dir.path().join("o.wav");
    let o = common::run(&["redact", p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("broken.wav"));
    assert!(!out.exists());
    // A video input cannot go into an audio-only file.
    let o = common::run(&[
        "redact",
        common::sample("city_pan.mp4").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("cannot hold"));
}

#[test]
fn without_its_model_the_vad_fails_the_clip_or_mutes_everything_when_configured() {
    let dir = common::scratch();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    // Face models present, VAD model missing.
    for m in ["yunet_n_dynamic.onnx", "centerface_dynamic.onnx"] {
        std::fs::copy(common::models().join(m), models.join(m)).unwrap();
    }
    let input = gaps_with_hum(dir.path());
    let out = dir.path().join("o.wav");
    let o = common::run(&[
        "redact",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("silero"),
        "{}",
        common::stderr(&o)
    );
    assert!(!out.exists());

    let mut c = cfg(VoiceMode::Mute);
    c.runtime.models_dir = Some(models);
    c.voice.on_vad_failure = obscura::config::VadFailure::Mute;
    let job = Job {
        input: input.clone(),
        output: out.clone(),
        sidecar: None,
    };
    let r = redact_file(&job, &c, &Control::default()).unwrap();
    let v = r.sidecar.voice.unwrap();
    assert!(v.vad_failed && v.mode == "mute");
    let (b, _) = decode_audio(&out).unwrap();
    assert!(b.iter().all(|&s| s == 0.0), "the whole track is silent");
}

/// Ten minutes of audio: the output has exactly the input's length and a click placed near
/// the end comes out on the same sample — no drift, no lost or added samples.
#[test]
fn a_long_recording_keeps_every_sample_in_place() {
    let dir = common::scratch();
    let rate = 16_000u32;
    let n = rate as usize * 600;
    let click = rate as usize * 599 + 1234;
    let mut x: Vec<f32> = (0..n).map(|i| 0.01 * ((i as f32 * 0.37).sin())).collect();
    x[click] = 0.9;
    let input = dir.path().join("long.wav");
    common::write_wav(&input, &x, rate);
    let out = redact_to(&input, dir.path(), "long-out.wav", VoiceMode::Mute);
    let (y, r) = decode_audio(&out.output).unwrap();
    assert_eq!(r, rate);
    assert_eq!(y.len(), n, "same number of samples");
    let peak = y
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap()
        .0;
    assert_eq!(peak, click, "the click moved");
    assert!(out.sidecar.voice.unwrap().segments.is_empty());
}
