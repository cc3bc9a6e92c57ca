//! Suite 3 of RELIABILITY.md: fail closed under faults. Real pipelines and real models; the
//! faults are injected with the documented hook `OBSCURA_FAULT` (src/pipeline/fault.rs) or by
//! really corrupting / removing the model file while a batch runs. In every case the clip
//! fails, nothing exists at its output (no unredacted frame or speech can reach anyone), the
//! error is one line naming the input, and through `ingest` nothing is stored and the input is
//! quarantined with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

fn seed(name: &str) -> PathBuf {
    common::repo().join("tests/corpus/seeds").join(name)
}

fn redact_with_fault(input: &Path, fault: &str, extra_config: &str) -> (Output, tempfile::TempDir) {
    let dir = common::scratch();
    let cfg = dir.path().join("obscura.toml");
    std::fs::write(&cfg, extra_config).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut child = common::bin()
        .env("OBSCURA_FAULT", fault)
        .env("RUST_LOG", "error")
        .args(["redact", "--json", "--config"])
        .arg(&cfg)
        .arg(input)
        .arg("-o")
        .arg(out_dir.join("out.mp4"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Hang guard, not a speed check: a run that never ends is killed and fails the test.
    let mut polls = 0;
    while child.try_wait().unwrap().is_none() {
        polls += 1;
        if polls > 3000 {
            let _ = child.kill();
            panic!("obscura redact with fault {fault} never ended");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (child.wait_with_output().unwrap(), dir)
}

/// The failure contract: status 1, the expected class, one stderr line naming the input, no
/// panic text, and an empty output folder (no output, no sidecar, no temporary file).
fn assert_failed_closed(o: &Output, dir: &Path, input: &Path, class: &str) {
    let err = common::stderr(o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["class"], class, "{v}");
    assert_eq!(
        common::listing(&dir.join("out")),
        Vec::<String>::new(),
        "nothing may be written"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err}");
    assert!(
        lines[0].starts_with(&format!("obscura: error: {}: ", input.display())),
        "the line names the input: {}",
        lines[0]
    );
    assert!(!err.contains("panicked at"), "{err}");
}

#[test]
fn a_detector_error_mid_clip_fails_it_and_writes_nothing() {
    let input = seed("clip.mp4");
    for frame in [0, 12, 23] {
        let (o, dir) = redact_with_fault(&input, &format!("detect-error@frame={frame}"), "");
        assert_failed_closed(&o, dir.path(), &input, "detector_failed");
    }
}

/// The same with the video decoded twice (`limits.decode_twice`, default at 4K): the second
/// decode, waiting behind the tracker, must not let a frame through, and a stage stuck for
/// good still ends the run.
#[test]
fn decoded_twice_a_detector_error_or_a_stuck_stage_fails_the_clip_and_writes_nothing() {
    let input = seed("clip.mp4");
    for frame in [0, 12, 23] {
        let (o, dir) = redact_with_fault(
            &input,
            &format!("detect-error@frame={frame}"),
            "[limits]\ndecode_twice = \"always\"\n",
        );
        assert_failed_closed(&o, dir.path(), &input, "detector_failed");
    }
    let (o, dir) = redact_with_fault(
        &input,
        "detect-stall@frame=6",
        "[limits]\nstall_secs = 2\ndecode_twice = \"always\"\n",
    );
    assert_failed_closed(&o, dir.path(), &input, "stalled");
}

/// A stage that falls behind for good (the hook hangs the detect stage, as a hung inference
/// would): the watchdog fired, but the run then waited forever to join that stage. It now
/// abandons stuck stages after a bounded wait and fails the clip as stalled.
#[test]
fn regression_a_stage_stuck_for_good_held_the_run_forever_after_the_watchdog() {
    let input = seed("clip.mp4");
    // redact_with_fault kills and fails a run that never ends (the defect this guards).
    let (o, dir) = redact_with_fault(&input, "detect-stall@frame=6", "[limits]\nstall_secs = 2\n");
    assert_failed_closed(&o, dir.path(), &input, "stalled");
}

/// The encoder's error named its temporary file (already deleted) and spread over two
/// lines of stderr (GStreamer's debug text): it now names the input, on one line.
#[test]
fn regression_encoder_error_named_the_temp_file_over_two_lines() {
    let input = seed("clip.mp4");
    for frame in [0, 10] {
        let (o, dir) = redact_with_fault(&input, &format!("encode-error@frame={frame}"), "");
        assert_failed_closed(&o, dir.path(), &input, "encode_failed");
        assert!(!common::stderr(&o).contains(".obscura-tmp-"));
    }
}

/// A panicking stage printed Rust's panic message and backtrace on stderr, and its error
/// named an empty path (": internal error: ..."): now one line naming the input.
#[test]
fn regression_stage_panic_printed_a_backtrace_and_no_file_name() {
    let input = seed("clip.mp4");
    let dir = common::scratch();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let o = common::bin()
        .env("OBSCURA_FAULT", "redact-panic@frame=3")
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "error")
        .args(["redact", "--json"])
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("out/out.mp4"))
        .output()
        .unwrap();
    assert_failed_closed(&o, dir.path(), &input, "internal");
    assert!(common::stderr(&o).contains("stage redact panicked"));
}

/// The model file corrupted (then removed) while a batch runs: every clip that started after
/// it fails with a model error and has no output; every clip that has an output was redacted
/// by the verified model (its sidecar says so).
#[test]
fn a_model_corrupted_or_removed_mid_batch_stops_every_later_clip() {
    for removal in [false, true] {
        let dir = common::scratch();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        for m in ["yunet_n_dynamic.onnx", "silero_vad_16k_b1_static.onnx"] {
            std::fs::copy(common::models().join(m), models.join(m)).unwrap();
        }
        let input = dir.path().join("in");
        std::fs::create_dir_all(&input).unwrap();
        let n = 6;
        for i in 0..n {
            std::fs::copy(seed("clip.mp4"), input.join(format!("c{i}.mp4"))).unwrap();
        }
        let out = dir.path().join("out");
        // An explicit models folder: no fallback to another folder of the search path.
        let cfg = dir.path().join("obscura.toml");
        std::fs::write(
            &cfg,
            format!("[runtime]\nmodels_dir = \"{}\"\n", models.display()),
        )
        .unwrap();
        let child = common::bin()
            .env("OBSCURA_MODELS", &models)
            .args(["batch", "--jobs", "1", "--json", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out)
            .arg(&input)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Once the first clip is committed, break the face model.
        let mut polls = 0;
        while !out.join("c0.mp4.json").exists() && !out.join("c0.mp4").exists() {
            polls += 1;
            assert!(polls < 24_000, "first clip never came (hang guard)");
            std::thread::sleep(Duration::from_millis(5));
        }
        let model = models.join("yunet_n_dynamic.onnx");
        if removal {
            std::fs::remove_file(&model).unwrap();
        } else {
            let mut b = std::fs::read(&model).unwrap();
            let at = b.len() / 2;
            b[at] ^= 0xFF;
            std::fs::write(&model, b).unwrap();
        }
        let o = child.wait_with_output().unwrap();
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(o.status.code(), Some(1), "the batch reports failures: {r}");
        let files = r["files"].as_array().unwrap();
        assert_eq!(files.len(), n);
        let mut failed = 0;
        for f in files {
            let name = Path::new(f["input"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            let o = out.join(&name);
            if f["status"] == "ok" {
                let sc: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(format!("{}.json", o.display())).unwrap(),
                )
                .unwrap();
                assert_eq!(
                    sc["detector"]["model_sha256"],
                    obscura::detect::ModelKind::Yunet.sha256(),
                    "{name} was redacted by the verified model"
                );
            } else {
                failed += 1;
                let class = f["class"].as_str().unwrap_or_default();
                let want = if removal {
                    "model_missing"
                } else {
                    "model_checksum"
                };
                assert_eq!(class, want, "{f}");
                assert!(!o.exists(), "no output for {name}");
                assert!(!Path::new(&format!("{}.json", o.display())).exists());
            }
        }
        assert!(failed >= 1, "the clips after the corruption failed: {r}");
        assert!(
            common::listing(&out)
                .iter()
                .all(|n| !n.contains(".obscura-tmp-")),
            "no temporary file left"
        );
    }
}

fn ingest_config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
[regions.eu]
store = "file://{store}"

[devices]
"cam-1" = {{ region = "eu", account = "acct-1", minor = false }}

[retention]
personal = "30d"
non_personal = "365d"

[paths]
quarantine = "{q}"
audit = "{a}"
work = "{w}"
"#,
        store = dir.join("store").display(),
        q = dir.join("quarantine").display(),
        a = dir.join("audit.jsonl").display(),
        w = dir.join("work").display(),
    );
    let p = dir.join("obscura.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Through `ingest`: each fault stores nothing and quarantines the input with its reason.
#[test]
fn ingest_under_faults_stores_nothing_and_quarantines_with_the_reason() {
    for (fault, needle) in [
        ("detect-error@frame=5", "inference failed"),
        ("encode-error@frame=5", "encoding failed"),
        ("redact-panic@frame=5", "panicked"),
    ] {
        let dir = common::scratch();
        let cfg = ingest_config(dir.path());
        let input = dir.path().join("door.mp4");
        std::fs::copy(seed("clip.mp4"), &input).unwrap();
        let o = common::bin()
            .env("OBSCURA_FAULT", fault)
            .env("RUST_LOG", "error")
            .args(["ingest", "--device", "cam-1", "--config"])
            .arg(&cfg)
            .arg(&input)
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0), "{fault}: {}", common::stderr(&o));
        assert!(
            common::files_under(&dir.path().join("store")).is_empty(),
            "{fault}: nothing stored: {:?}",
            common::files_under(&dir.path().join("store"))
        );
        assert!(input.is_file(), "the input is kept");
        let q = common::files_under(&dir.path().join("quarantine"));
        let reason = q
            .iter()
            .find(|n| n.ends_with(".reason.json"))
            .unwrap_or_else(|| panic!("{fault}: no reason file in {q:?}"));
        let r: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("quarantine").join(reason)).unwrap(),
        )
        .unwrap();
        assert!(
            r["error"].as_str().unwrap_or_default().contains(needle),
            "{fault}: {r}"
        );
        assert_eq!(q.len(), 2, "input copy + reason: {q:?}");
        let work = common::files_under(&dir.path().join("work"));
        assert!(work.is_empty(), "{fault}: work folder left {work:?}");
        let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
        assert!(audit.contains("\"quarantine\""), "{audit}");
    }
}

/// The second detector of grey sweeps (`detect.grey_second_model`) is built only when a clip
/// turns out grey: with its model missing from the models folder, a grey (night infrared)
/// clip fails with a model error naming the file and writes nothing, while a colour clip,
/// which never needs it, is redacted; with `grey_second_model = "none"` the grey clip is
/// redacted too, and its sidecar says no second model ran.
#[test]
fn a_grey_clip_without_its_second_model_fails_closed_and_a_colour_clip_does_not_need_it() {
    let dir = common::scratch();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(
        common::models().join("yunet_n_dynamic.onnx"),
        models.join("yunet_n_dynamic.onnx"),
    )
    .unwrap();
    let clip = |name: &str, balance: &str| {
        let p = dir.path().join(name);
        common::gst_launch(&format!(
            "videotestsrc num-buffers=20 pattern=smpte ! video/x-raw,width=1280,height=720,\
             framerate=10/1 ! videoconvert ! {balance} videoconvert ! x264enc ! mp4mux ! \
             filesink location={}",
            p.display()
        ));
        p
    };
    let grey = clip("grey.mp4", "videobalance saturation=0 !");
    let colour = clip("colour.mp4", "");
    let config = |extra: &str| {
        let cfg = dir.path().join(format!("obscura{}.toml", extra.len()));
        std::fs::write(
            &cfg,
            format!(
                "[runtime]\nmodels_dir = \"{}\"\n[voice]\nmode = \"keep\"\n[detect]\n{extra}",
                models.display()
            ),
        )
        .unwrap();
        cfg
    };
    let defaults = config("");
    common::expect_failure(
        &grey,
        &["--config", defaults.to_str().unwrap()],
        3,
        &["grey.mp4", "yunet_s_dynamic.onnx"],
    );
    // Redacted, with the sidecar's zoom record.
    let zoom_of = |input: &Path, cfg: &Path| {
        let out = dir.path().join("out.mp4");
        let o = common::redact_to(input, &out, &["--config", cfg.to_str().unwrap()]);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let sc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{}.json", out.display())).unwrap())
                .unwrap();
        sc["detector"]["zoom"].clone()
    };
    let zoom = zoom_of(&colour, &defaults);
    assert_eq!(zoom["grey"], false);
    assert!(zoom.get("second_model").is_none());

    let off = config("grey_second_model = \"none\"\n");
    let zoom = zoom_of(&grey, &off);
    assert_eq!(zoom["grey"], true);
    assert!(zoom.get("second_model").is_none());
    assert_eq!(zoom["second_input_mpx"], 0.0);
}
