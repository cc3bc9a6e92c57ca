//! The exposure guarantee (README, "What is promised about faces") on the stress corpus: clips
//! that look like what camera fleets record (night infrared, dusk, heavy compression, 1080p to
//! 4K still cameras with small slow faces, faces stepping out from behind things, a face
//! crossing close to the camera, a pan), made with exact per-frame ground truth by
//! `scripts/make_stress_corpus.py` at test time (cached under `target/`, keyed by the
//! script's sha256). Every clip is redacted through the real pipeline with default settings,
//! decoded, and measured with `obscura eval`'s measures: the share of face boxes left
//! unredacted, the longest run of unredacted frames of any face, and the share of the
//! picture outside faces that was altered. Half the clips are `tune`, half `holdout` (other
//! faces, seeds and paths); the bounds hold on both.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use obscura::eval::{CorpusReport, REDACTED_BELOW, evaluate_folder};
use obscura::pipeline::{Control, Job, redact_file};

/// Share of ground-truth face boxes (12 px and up) left unredacted, over the whole corpus.
const MAX_LEAK_OVERALL: f64 = 0.003;
/// The same in any one condition.
const MAX_LEAK_PER_CONDITION: f64 = 0.01;
/// Consecutive unredacted frames of any one face, first appearance included.
const MAX_RUN_FRAMES: u64 = 3;
/// Share of the picture outside faces altered, in any clip (stale or oversized boxes).
const MAX_ALTERED: f64 = 0.05;

/// Conditions where the guarantee is not met yet (README, "What is promised about faces"),
/// with the share of boxes left that they must stay under: a ceiling that catches a
/// regression, not the promise. None since 2026-12-08: night infrared, 1.9% and a 21-frame
/// run before, meets it since grey sweeps ask a second detector and follow their 0.2-0.5
/// candidates (`detect.grey_second_model`). That is this file's regression test for the
/// 16 px face both sweeps of its first second missed (tune clip, 21 frames shown).
const NOT_MET: [(&str, f64); 0] = [];

static CORPUS: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The corpus folder, generated once per version of the generator.
fn corpus() -> PathBuf {
    let mut slot = CORPUS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = slot.as_ref() {
        return p.clone();
    }
    let script = common::repo().join("scripts/make_stress_corpus.py");
    let hash = obscura::fsutil::sha256_file(&script).expect("the generator is in scripts/");
    let dir = common::repo()
        .join("target")
        .join(format!("stress-corpus-{}", &hash[..12]));
    if !dir.join("manifest.json").is_file() {
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg(&tmp)
            .output()
            .expect("python3 runs (scripts/setup.sh installs it with numpy and pillow)");
        assert!(
            out.status.success(),
            "make_stress_corpus.py failed (scripts/setup.sh installs numpy and pillow): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).unwrap();
    }
    *slot = Some(dir.clone());
    dir
}

/// Redacts every clip of `corpus` with `cfg` into `out` (same names) and evaluates them.
fn redact_all(corpus: &Path, out: &Path, cfg: &obscura::config::Config) -> CorpusReport {
    let mut clips: Vec<PathBuf> = std::fs::read_dir(corpus)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
        .collect();
    clips.sort();
    assert!(clips.len() >= 8, "the corpus has its clips: {clips:?}");
    for clip in &clips {
        let job = Job {
            input: clip.clone(),
            output: out.join(clip.file_name().unwrap()),
            sidecar: None,
        };
        redact_file(&job, cfg, &Control::default())
            .unwrap_or_else(|e| panic!("{}: redaction succeeds: {e}", clip.display()));
    }
    evaluate_folder(corpus, out, REDACTED_BELOW).unwrap()
}

#[test]
fn every_face_on_the_stress_corpus_is_redacted_within_the_stated_bounds() {
    let corpus = corpus();
    let out = common::scratch();
    let report = redact_all(&corpus, out.path(), &common::config());
    println!("{}", report.table());
    let all = report.all();
    assert_eq!(all.errors, 0, "every clip evaluated");
    assert!(all.boxes > 5_000, "ground truth evaluated: {}", all.boxes);
    let mut failures = Vec::new();
    let not_met = |group: &str| NOT_MET.iter().find(|(g, _)| *g == group).map(|(_, l)| *l);
    for s in &report.summary {
        if s.group.starts_with("all") {
            continue;
        }
        if let Some(ceiling) = not_met(&s.group) {
            if s.leak_rate > ceiling {
                failures.push(format!(
                    "{} (not met yet): {:.2}% of boxes leaked, above its {:.0}% ceiling",
                    s.group,
                    100.0 * s.leak_rate,
                    100.0 * ceiling
                ));
            }
            continue;
        }
        if s.leak_rate > MAX_LEAK_PER_CONDITION {
            failures.push(format!(
                "{}: {:.2}% of boxes leaked",
                s.group,
                100.0 * s.leak_rate
            ));
        }
        if s.longest_run_frames > MAX_RUN_FRAMES {
            failures.push(format!(
                "{}: a face unredacted for {} frames in a row ({})",
                s.group,
                s.longest_run_frames,
                s.longest_run_at.as_deref().unwrap_or("?")
            ));
        }
        if s.outside_altered_max > MAX_ALTERED {
            failures.push(format!(
                "{}: {:.1}% of the picture outside faces altered",
                s.group,
                100.0 * s.outside_altered_max
            ));
        }
    }
    // Overall, over the conditions where the guarantee is met.
    let met: Vec<_> = report
        .summary
        .iter()
        .filter(|s| !s.group.starts_with("all") && not_met(&s.group).is_none())
        .collect();
    let (boxes, leaked) = met
        .iter()
        .fold((0, 0), |(b, l), s| (b + s.boxes, l + s.leaked));
    assert!(met.len() >= 7, "conditions: {:?}", report.summary);
    if leaked as f64 > MAX_LEAK_OVERALL * boxes as f64 {
        failures.push(format!("overall: {leaked} of {boxes} boxes leaked"));
    }
    // Only the infrared clips were taken for grey pictures (swept closer); dusk, heavy
    // compression and the colour scenes were not.
    let mut sidecars = 0;
    for clip in std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(|e| e.ok())
    {
        let name = clip.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".mp4.json") {
            continue;
        }
        sidecars += 1;
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(clip.path()).unwrap()).unwrap();
        let grey = sidecar["detector"]["zoom"]["grey"].as_bool();
        if grey != Some(name.starts_with("night_ir")) {
            failures.push(format!("{name}: detector.zoom.grey is {grey:?}"));
        }
        // The second detector ran on the grey clips' sweeps only.
        let second = sidecar["detector"]["zoom"]["second_model"].as_str();
        let second_mpx = sidecar["detector"]["zoom"]["second_input_mpx"]
            .as_f64()
            .unwrap_or(0.0);
        let want = name.starts_with("night_ir").then_some("yunet-s");
        if second != want || (second_mpx > 0.0) != want.is_some() {
            failures.push(format!(
                "{name}: detector.zoom.second_model {second:?}, {second_mpx} Mpx"
            ));
        }
    }
    assert!(sidecars >= 8, "a sidecar beside every output: {sidecars}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
