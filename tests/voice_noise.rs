//! Voice redaction in noise (README, "What is promised about voices"): real recorded speech
//! (seven speakers, six languages, wide and telephone band) mixed with recorded street, music,
//! crowd, rain, engine and wind noise, babble and synthetic HVAC at 10, 5, 0 and −5 dB SNR, made
//! with per-clip speech labels by `scripts/make_voice_corpus.py` from `samples/voice/` at test
//! time (cached under `target/`, keyed by the script's sha256). Every clip goes through the
//! real binary (`obscura batch`, default settings: mute) and is measured with `obscura eval`'s
//! voice measures. Speakers and noise recordings of the `holdout` half were not used to choose
//! any setting.

mod common;

use std::path::PathBuf;

use obscura::eval::{CorpusReport, VoiceSummary, evaluate_folder};

/// Speech frames left audible, the mean over a split's clips at one SNR (10, 5, 0 dB).
const MAX_AUDIBLE_MEAN: f64 = 0.01;
/// The same in any one clip at 10, 5 and 0 dB.
const MAX_AUDIBLE_CLIP: f64 = 0.02;
/// In any clean clip (no noise): the held-out telephone-band CMU reading keeps 3.0% (a quiet
/// word ending that the VAD lets go 0.4 s early, more than the padding covers).
const CLEAN_CLIP_CEILING: f64 = 0.035;
/// Time more than 0.5 s from speech muted, in any clip at 10 and 5 dB whose noise is not
/// speech itself (babble): music, traffic and machinery stay audible between the words.
const MAX_FAR_MUTED_CLIP: f64 = 0.15;

/// Where the promise is not met yet (README): ceilings that catch a regression.
/// Tune at 0 dB: a telephone-band voice under HVAC noise (t4) keeps 13% of its frames.
const TUNE_0DB_CLIP_CEILING: f64 = 0.16;
/// −5 dB (the bar: no clip over 20%): telephone-band speech under music, HVAC and
/// engine noise is not found at all (100%); the means are 41% (tune) and 19% (holdout).
const MINUS5_MEAN_CEILING: [(&str, f64); 2] = [("tune", 0.45), ("holdout", 0.25)];

fn corpus() -> PathBuf {
    let script = common::repo().join("scripts/make_voice_corpus.py");
    let hash = obscura::fsutil::sha256_file(&script).expect("the generator is in scripts/");
    let dir = common::repo()
        .join("target")
        .join(format!("voice-corpus-{}", &hash[..12]));
    if !dir.join("corpus.json").is_file() {
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg(&tmp)
            .output()
            .expect("python3 runs (scripts/setup.sh installs it with numpy)");
        assert!(
            out.status.success(),
            "make_voice_corpus.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).unwrap();
    }
    dir
}

fn row<'a>(r: &'a CorpusReport, group: &str) -> &'a VoiceSummary {
    r.voice_summary
        .iter()
        .find(|s| s.group == group)
        .unwrap_or_else(|| panic!("no row {group}"))
}

#[test]
fn speech_in_noise_is_muted_within_the_bounds_and_the_noise_between_stays_audible() {
    let corpus = corpus();
    let work = common::scratch();
    for split in ["tune", "holdout"] {
        let out = work.path().join(split);
        let o = common::run(&[
            "batch",
            corpus.join(split).to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "batch {split}: {}", common::stderr(&o));
        let r = evaluate_folder(&corpus.join(split), &out, obscura::eval::REDACTED_BELOW)
            .expect("ground truth");
        eprintln!("{split}\n{}", r.table());
        assert_eq!(r.errors(), 0, "every clip evaluated");
        assert!(r.clips.len() >= 30, "{}", r.clips.len());
        for snr in ["10 dB", "5 dB", "0 dB"] {
            let s = row(&r, snr);
            assert!(s.clips >= 6, "{snr}: {} clips", s.clips);
            assert!(
                s.mean_clip_audible_rate <= MAX_AUDIBLE_MEAN || (split == "tune" && snr == "0 dB"),
                "{split} {snr}: {:.2}% of speech frames audible on average",
                100.0 * s.mean_clip_audible_rate
            );
        }
        for c in &r.clips {
            let v = c.voice.as_ref().expect("voice measured");
            let snr = c.snr_db.map(|d| d.round() as i64);
            let bound = match (split, snr) {
                (_, Some(-5)) => continue,
                (_, None) => CLEAN_CLIP_CEILING,
                ("tune", Some(0)) => TUNE_0DB_CLIP_CEILING,
                _ => MAX_AUDIBLE_CLIP,
            };
            assert!(
                v.speech_audible_rate <= bound,
                "{}: {:.2}% of speech frames audible (bound {:.0}%)",
                c.name,
                100.0 * v.speech_audible_rate,
                100.0 * bound
            );
            // Muted is muted: what is left of the speech carries little of its energy.
            assert!(
                v.speech_energy_left <= v.speech_audible_rate.max(0.005) * 2.0,
                "{}: {:.2}% of the speech energy left",
                c.name,
                100.0 * v.speech_energy_left
            );
            if matches!(snr, Some(10) | Some(5)) && c.condition != "babble" {
                assert!(
                    v.far_muted_rate <= MAX_FAR_MUTED_CLIP,
                    "{}: {:.1}% of the time far from speech muted",
                    c.name,
                    100.0 * v.far_muted_rate
                );
            }
        }
        let ceiling = MINUS5_MEAN_CEILING
            .iter()
            .find(|(s, _)| *s == split)
            .unwrap()
            .1;
        let m5 = row(&r, "-5 dB");
        assert!(
            m5.mean_clip_audible_rate <= ceiling,
            "{split} -5 dB: {:.1}% audible on average (ceiling {:.0}%)",
            100.0 * m5.mean_clip_audible_rate,
            100.0 * ceiling
        );
    }
}
