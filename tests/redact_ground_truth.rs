//! End to end on the bundled samples with ground truth: real GStreamer decode/encode, the real
//! YuNet model, default settings. Asserts outcomes on pixels, not on internals.

mod common;

use std::time::Duration;

use obscura::eval::{GroundTruth, evaluate_with, luma_hashes};
use obscura::pipeline::{Control, Job, Mode, redact_file, run};
use obscura::redact::video::Style;

struct Checked {
    leak_rate: f64,
    faces: Vec<obscura::eval::FaceExposure>,
    outside_unchanged: f64,
    zoom: obscura::types::ZoomSweeps,
    main: obscura::types::MainPasses,
    /// Tracks and frames with faces, from the sidecar.
    found: (u64, u64),
}

fn redact_and_check(name: &str, cfg: &obscura::config::Config) -> Checked {
    redact_and_check_with(name, cfg, obscura::eval::REDACTED_BELOW)
}

fn redact_and_check_with(
    name: &str,
    cfg: &obscura::config::Config,
    redacted_below: f64,
) -> Checked {
    let input = common::sample(&format!("{name}.mp4"));
    let gt = GroundTruth::load(&common::sample(&format!("{name}.gt.json"))).unwrap();
    let dir = common::scratch();
    let job = Job {
        input: input.clone(),
        output: dir.path().join("out.mp4"),
        sidecar: None,
    };
    let out = redact_file(&job, cfg, &Control::default()).expect("redaction succeeds");

    // Same frame count, rate and duration (within one frame); audio kept.
    let info_in = obscura::media::probe(&input, Duration::from_secs(20)).unwrap();
    let info_out = obscura::media::probe(&out.output, Duration::from_secs(20)).unwrap();
    let (vi, vo) = (
        info_in.video.clone().unwrap(),
        info_out.video.clone().unwrap(),
    );
    assert_eq!((vo.width, vo.height), (vi.width, vi.height));
    assert_eq!((vo.fps_n, vo.fps_d), (vi.fps_n, vi.fps_d));
    let frame = 1.0 / vi.fps();
    assert!(
        (info_out.duration_s() - info_in.duration_s()).abs() <= frame + 0.05,
        "duration {} vs {}",
        info_out.duration_s(),
        info_in.duration_s()
    );
    assert!(info_out.audio.is_some(), "the audio track is kept");

    let rep = evaluate_with(&input, &out.output, &gt, redacted_below).unwrap();
    assert_eq!(rep.frames_input, gt.frames);
    assert_eq!(rep.frames_output, gt.frames, "same number of frames");
    assert!(rep.boxes > 800, "ground truth evaluated: {}", rep.boxes);

    // The sidecar describes the same run.
    let s = &out.sidecar;
    assert_eq!(s.schema, "obscura.sidecar");
    assert_eq!(s.totals.frames, gt.frames);
    assert_eq!(
        s.input.sha256,
        obscura::fsutil::sha256_file(&input).unwrap()
    );
    assert_eq!(
        s.output.sha256,
        obscura::fsutil::sha256_file(&out.output).unwrap()
    );
    assert!(s.totals.tracks > 0 && s.totals.frames_with_faces > 0);
    let on_disk = std::fs::read(&out.sidecar_path).unwrap();
    assert!(
        on_disk == serde_json::to_vec_pretty(s).unwrap(),
        "the sidecar on disk is the one returned"
    );
    let _typed: obscura::types::Sidecar = serde_json::from_slice(&on_disk).unwrap();
    println!(
        "{name}: {} boxes, leak {:.4}, outside unchanged {:.4}, leaks {:?}",
        rep.boxes,
        rep.leak_rate,
        rep.outside_unchanged,
        rep.leaks.iter().take(10).collect::<Vec<_>>()
    );
    Checked {
        leak_rate: rep.leak_rate,
        faces: rep.faces.clone(),
        outside_unchanged: rep.outside_unchanged,
        zoom: s.detector.as_ref().and_then(|d| d.zoom).unwrap_or_default(),
        main: s.detector.as_ref().and_then(|d| d.main).unwrap_or_default(),
        found: (s.totals.tracks, s.totals.frames_with_faces),
    }
}

#[test]
fn faces_of_every_size_entering_and_leaving_are_redacted_in_every_frame() {
    let c = redact_and_check("faces_sizes", &common::config());
    assert!(c.leak_rate <= 0.01, "leak rate {}", c.leak_rate);
    assert!(
        c.outside_unchanged >= 0.95,
        "outside unchanged {}",
        c.outside_unchanged
    );
}

/// `limits.decode_twice`: the tracker holds only boxes and a second decode brings the
/// frames back to meet them. The same faces are found in the same frames, every frame is
/// kept, and every face is redacted as when the frames are held.
#[test]
fn a_video_decoded_twice_is_redacted_as_when_its_frames_are_held() {
    let mut once = common::config();
    once.limits.decode_twice = obscura::config::DecodeTwice::Never;
    let mut twice = common::config();
    twice.limits.decode_twice = obscura::config::DecodeTwice::Always;
    let a = redact_and_check("faces_sizes", &once);
    let b = redact_and_check("faces_sizes", &twice);
    assert!(b.leak_rate <= 0.01, "leak rate {}", b.leak_rate);
    assert!(b.outside_unchanged >= 0.95, "{}", b.outside_unchanged);
    assert_eq!(a.found, b.found, "tracks and frames with faces");
    assert_eq!(a.leak_rate, b.leak_rate);
}

#[test]
fn street_crowd_panning_clip_is_redacted_in_every_frame() {
    let c = redact_and_check("city_pan", &common::config());
    assert!(c.leak_rate <= 0.01, "leak rate {}", c.leak_rate);
    // The camera pans all the time: the sweeps between full ones follow it.
    let z = c.zoom;
    assert!(
        z.sweeps >= 25
            && z.followed_motion >= z.sweeps / 2
            && z.full + z.followed_motion == z.sweeps,
        "{z:?}"
    );
    assert!(
        c.outside_unchanged >= 0.95,
        "outside unchanged {}",
        c.outside_unchanged
    );
}

/// A camera panning diagonally by fractions of a pixel per frame (every frame re-sampled, as a
/// real pan gives) over faces from 160 down to 12 px: the sweeps between full ones follow the
/// pan and look at much less than the whole frame, and no face leaks.
#[test]
fn a_camera_panning_by_fractions_of_a_pixel_is_followed_and_every_face_redacted() {
    let c = redact_and_check("composite_pan", &common::config());
    assert!(c.leak_rate <= 0.01, "leak rate {}", c.leak_rate);
    assert!(c.outside_unchanged >= 0.95, "{}", c.outside_unchanged);
    let z = c.zoom;
    assert!(z.sweeps >= 10 && z.followed_motion >= z.sweeps / 2, "{z:?}");
    // A full sweep of 640x360 at 2x is one 1280x736 tile (0.94 Mpx).
    let full_mpx = 1280.0 * 736.0 / 1e6;
    assert!(
        z.input_mpx < 0.7 * full_mpx * z.sweeps as f64,
        "partial sweeps looked at nearly everything: {z:?}"
    );
}

/// Only the first zoom sweep covers the whole frame; every later one looks only where the
/// picture changed and keeps the faces found elsewhere. The small faces move from the first
/// frame on, so they are found again only through those partial sweeps: none may leak. On
/// city_pan the camera pans through the whole clip: every later sweep follows the pan, carries
/// the faces it saw with the picture and looks only at what entered the frame.
/// composite_pan with zoom sweeps a second apart (25 frames): its 12 px face (id 12) comes in
/// through the edge between two sweeps while the camera pans. Found at one sweep only, its
/// track had one key: the look-back and look-ahead stood still while the picture moved, and 16
/// of its boxes were left (13 frames in a row from its first). The follow look gives it a key
/// every main pass. (Its 90 px face 3 is left for frames 20-25 at this setting with or without
/// the follow look, as on 4568a87: a main-pass matter, not this one.)
#[test]
fn regression_a_small_face_found_between_sweeps_is_followed_by_the_follow_look() {
    let small = |c: &Checked| {
        c.faces
            .iter()
            .find(|f| f.face == 12)
            .cloned()
            .expect("the 12 px face is evaluated")
    };
    let mut cfg = common::config();
    cfg.detect.zoom_every = 25;
    let c = redact_and_check("composite_pan", &cfg);
    let f = small(&c);
    assert_eq!((f.leaked, f.longest_run_frames), (0, 0), "{f:?}");
    assert!(
        c.zoom.follow_looks > 0 && c.zoom.followed > 0,
        "{:?}",
        c.zoom
    );
    cfg.detect.follow = false;
    let without = redact_and_check("composite_pan", &cfg);
    let f = small(&without);
    assert!(
        f.leaked >= 5,
        "without the follow look it is left showing: {f:?}"
    );
    assert_eq!(without.zoom.follow_looks, 0);
}

#[test]
fn zoom_sweeps_limited_to_what_changed_still_redact_every_face() {
    for name in ["faces_sizes", "city_pan"] {
        let mut cfg = common::config();
        cfg.detect.zoom_full_every = 60;
        let c = redact_and_check(name, &cfg);
        assert!(c.leak_rate <= 0.01, "{name}: leak rate {}", c.leak_rate);
        assert!(c.outside_unchanged >= 0.95, "{name}");
        let z = c.zoom;
        assert_eq!(z.full, 1, "{name}: {z:?}");
        match name {
            "city_pan" => assert_eq!(z.followed_motion, z.sweeps - 1, "{z:?}"),
            _ => assert!(z.sweeps >= 4 && z.followed_motion == 0, "{z:?}"),
        }
    }
}

/// By default a zoom sweep looks first at 1x with a low threshold and magnifies only around
/// what that proposes: against sweeps that magnify all they look at, no face leaks on the clips
/// whose smallest faces are 12 px (faces_sizes's 12 px face scores down to 0.11 at 1x), for
/// much less detector input. On city_pan's crowd a look around every proposal can cost as much
/// as the magnified regions: those sweeps magnify the regions whole.
#[test]
fn zoom_sweeps_that_magnify_only_around_proposals_redact_every_face() {
    for (name, most_input) in [("faces_sizes", 0.5), ("composite_pan", 0.8)] {
        let proposed = redact_and_check(name, &common::config());
        let mut cfg = common::config();
        cfg.detect.zoom_proposal_threshold = 0.0;
        let magnified = redact_and_check(name, &cfg);
        let (p, m) = (proposed.zoom, magnified.zoom);
        println!("{name}: proposed {p:?}, magnified {m:?}");
        assert_eq!(proposed.leak_rate, 0.0, "{name}");
        assert_eq!(magnified.leak_rate, 0.0, "{name}");
        assert_eq!(p.sweeps, m.sweeps, "{name}");
        assert_eq!((p.proposed, m.proposed), (p.sweeps, 0), "{name}: {p:?}");
        assert!(
            p.input_mpx < most_input * m.input_mpx,
            "{name}: {p:?} against {m:?}"
        );
    }
    let crowd = redact_and_check("city_pan", &common::config());
    assert!(crowd.leak_rate <= 0.01, "leak rate {}", crowd.leak_rate);
    let z = crowd.zoom;
    assert!(z.proposed > 0 && z.proposed < z.sweeps, "{z:?}");
}

/// Only every 60th main pass covers the whole frame; the others look only around what changed
/// since the last one and at the whole of each face a change touches. On faces_sizes the faces
/// never stop moving: none may leak.
#[test]
fn main_passes_limited_to_what_changed_still_redact_every_face() {
    let mut cfg = common::config();
    cfg.detect.main_full_every = 60;
    let c = redact_and_check("faces_sizes", &cfg);
    assert!(c.leak_rate <= 0.0, "leak rate {}", c.leak_rate);
    assert!(c.outside_unchanged >= 0.95);
    let m = c.main;
    // The first pass is whole; later ones only where at most 35% of the blocks changed.
    assert!(m.passes >= 40 && m.full >= 1 && m.full < m.passes, "{m:?}");
    assert!(m.input_mpx < m.passes as f64 * 576.0 * 320.0 / 1e6, "{m:?}");
}

/// The first frame of faces_sizes held for `frames` frames at 30 fps (a still camera), encoded
/// by GStreamer's x264 as the bundled samples are.
fn make_still_clip(src: &std::path::Path, dst: &std::path::Path, frames: u32) {
    common::gst_launch(&format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! \
         imagefreeze num-buffers={frames} ! video/x-raw,framerate=30/1 ! \
         x264enc speed-preset=slow pass=qual quantizer=20 key-int-max=60 ! h264parse ! \
         mp4mux ! filesink location=\"{}\"",
        src.display(),
        dst.display()
    ));
}

/// A still camera: the main pass does not run where nothing changed (the faces of the pass
/// before stand), still covers the whole frame every `main_full_every`-th time, and every face
/// stays redacted in every frame — the same faces as with every pass over the whole frame.
#[test]
fn a_still_camera_skips_main_passes_where_nothing_changed_and_redacts_every_face() {
    let dir = common::scratch();
    let clip = dir.path().join("still.mp4");
    let frames = 120u64;
    make_still_clip(&common::sample("faces_sizes.mp4"), &clip, frames as u32);
    // Ground truth: faces_sizes's faces of its first frame, on every frame.
    let mut gt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::sample("faces_sizes.gt.json")).unwrap())
            .unwrap();
    let faces: Vec<serde_json::Value> = gt["faces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| {
            let first = f["boxes"].as_array()?.iter().find(|b| b[0] == 0)?.clone();
            let boxes: Vec<serde_json::Value> = (0..frames)
                .map(|i| {
                    let mut b = first.clone();
                    b[0] = i.into();
                    b
                })
                .collect();
            let mut f = f.clone();
            f["boxes"] = boxes.into();
            Some(f)
        })
        .collect();
    assert!(
        faces.len() >= 5,
        "faces in the first frame: {}",
        faces.len()
    );
    gt["faces"] = faces.into();
    gt["frames"] = frames.into();
    gt["speech"] = serde_json::json!([]);
    let gt_path = dir.path().join("still.gt.json");
    std::fs::write(&gt_path, serde_json::to_vec(&gt).unwrap()).unwrap();
    let gt = GroundTruth::load(&gt_path).unwrap();

    let redact = |main_full_every: u32, name: &str| {
        let mut cfg = common::config();
        cfg.detect.main_full_every = main_full_every;
        let job = Job {
            input: clip.clone(),
            output: dir.path().join(name),
            sidecar: None,
        };
        let out = redact_file(&job, &cfg, &Control::default()).expect("redaction succeeds");
        let rep = evaluate_with(&clip, &out.output, &gt, obscura::eval::REDACTED_BELOW).unwrap();
        assert_eq!(rep.frames_output, frames);
        assert!(rep.boxes >= 5 * frames, "{}", rep.boxes);
        assert_eq!(rep.leak_rate, 0.0, "{name}: {:?}", rep.leaks);
        let d = out.sidecar.detector.clone().unwrap();
        (d.main.unwrap(), out.sidecar.totals.clone())
    };
    let (m, totals) = redact(4, "gated.mp4");
    let (whole, totals_whole) = redact(1, "whole.mp4");
    println!("still camera: {m:?} against {whole:?}");
    assert_eq!(m.passes, whole.passes);
    assert!(m.passes >= 20, "{m:?}");
    // Every 4th pass whole; of the others most found nothing changed.
    assert!(
        m.full >= m.passes / 4 && m.full <= m.passes / 4 + 2,
        "{m:?}"
    );
    assert!(m.unchanged >= m.passes / 2, "{m:?}");
    assert!(
        m.input_mpx < 0.5 * whole.input_mpx,
        "{m:?} against {whole:?}"
    );
    assert_eq!((whole.full, whole.unchanged), (whole.passes, 0));
    assert_eq!(totals.tracks, totals_whole.tracks);
    assert_eq!(totals.frames_with_faces, totals_whole.frames_with_faces);
}

#[test]
fn fill_and_ellipse_styles_redact_as_strongly_as_blur() {
    for style in [Style::Fill, Style::Ellipse] {
        let mut cfg = common::config();
        cfg.redact.style = style;
        let c = redact_and_check("city_pan", &cfg);
        assert!(c.leak_rate <= 0.01, "{style:?}: leak rate {}", c.leak_rate);
        assert!(c.outside_unchanged >= 0.95, "{style:?}");
    }
}

#[test]
fn pixelate_changes_faces_and_leaves_the_rest() {
    let mut cfg = common::config();
    cfg.redact.style = Style::Pixelate;
    // A mosaic of at most 8x8 cells keeps a face's coarse layout on purpose (that is why it
    // is not the default), so the correlation criterion is looser: every face must still
    // differ clearly from the original (NCC below 0.9).
    let c = redact_and_check_with("city_pan", &cfg, 0.9);
    assert!(c.leak_rate <= 0.01, "leak rate {}", c.leak_rate);
    assert!(c.outside_unchanged >= 0.95);
}

/// Tag mode must hand the decoder's frames to the encoder untouched: its output equals a
/// plain transcode of the same input with the same (single-threaded, hence deterministic)
/// encoder, frame for frame.
#[test]
fn tag_style_changes_no_pixel() {
    let input = common::sample("city_pan.mp4");
    let dir = common::scratch();
    let mut cfg = common::config();
    cfg.encode.threads = 1;
    cfg.redact.style = Style::Tag;
    let tagged = Job {
        input: input.clone(),
        output: dir.path().join("tag.mp4"),
        sidecar: None,
    };
    let out = redact_file(&tagged, &cfg, &Control::default()).unwrap();
    assert!(
        out.sidecar.totals.tracks > 0,
        "tag mode still records the faces"
    );
    let plain = Job {
        input,
        output: dir.path().join("plain.mp4"),
        sidecar: None,
    };
    run(&plain, &cfg, &Control::default(), Mode::TranscodeOnly).unwrap();
    let a = luma_hashes(&tagged.output).unwrap();
    let b = luma_hashes(&plain.output).unwrap();
    assert_eq!(a.len(), 169);
    assert_eq!(a, b, "tag output differs from a plain transcode");
}

/// x264's own record of its settings (the SEI text x264 writes into the stream), as
/// `key=value` pairs.
fn x264_options(mp4: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let bytes = std::fs::read(mp4).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w == b"options: ")
        .expect("x264 options in the stream")
        + 9;
    let end = bytes[at..].iter().position(|&b| b == 0).unwrap_or(0) + at;
    String::from_utf8_lossy(&bytes[at..end])
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Redacts city_pan with `cfg`: what x264 recorded having run, and the output's bytes.
fn city_pan_x264(
    cfg: &obscura::config::Config,
) -> (std::collections::BTreeMap<String, String>, u64) {
    let dir = common::scratch();
    let job = Job {
        input: common::sample("city_pan.mp4"),
        output: dir.path().join("out.mp4"),
        sidecar: None,
    };
    let out = redact_file(&job, cfg, &Control::default()).unwrap();
    let len = std::fs::metadata(&out.output).unwrap().len();
    (x264_options(&out.output), len)
}

/// In its constant-quality mode x264enc turns its `bitrate` property (default 2048 kbit/s) into
/// x264's VBV cap: every output, whatever its size, was held to 2 Mbit/s (`vbv_maxrate=2048`
/// in x264's own record; this test failed with it). By default only the quality's CRF decides
/// now; `encode.video_max_kbps` sets a cap.
#[test]
fn regression_every_output_was_capped_at_2_mbit_s() {
    for (cap, want) in [(0u32, None), (800, Some(800u64))] {
        let mut cfg = common::config();
        cfg.encode.video_max_kbps = cap;
        let (o, _) = city_pan_x264(&cfg);
        let crf = format!("{}.0", cfg.encode.video_spec(None).crf);
        assert_eq!(o.get("crf"), Some(&crf), "{o:?}");
        let max: u64 = o
            .get("vbv_maxrate")
            .map_or(u64::MAX, |v| v.parse().unwrap());
        match want {
            None => assert!(max >= 1_000_000, "capped at {max} kbit/s: {o:?}"),
            Some(w) => assert_eq!(max, w, "{o:?}"),
        }
    }
}

/// Issue #30 (storage parity): what x264 records having run is what the quality level says —
/// the default `fast` is superfast with MB-tree, a 5-frame look-ahead, one B-frame, no adaptive
/// quantization (PSNR tuning), CABAC; `fastest` is the old default (ultrafast, CRF 23) — and
/// `encode.match_input_bitrate` caps the rate at that many times the input's video rate
/// (city_pan: 361 kbit/s stated by the container).
#[test]
fn quality_levels_run_the_x264_settings_they_name_and_the_input_rate_caps() {
    use obscura::media::encode::Quality;
    let run_with = |q: Quality, matched: f32| {
        let mut cfg = common::config();
        cfg.encode.quality = q;
        cfg.encode.match_input_bitrate = matched;
        city_pan_x264(&cfg)
    };
    let (fast, fast_len) = run_with(Quality::default(), 0.0);
    assert_eq!(Quality::default(), Quality::Fast);
    let want = |o: &std::collections::BTreeMap<String, String>, k: &str, v: &str| {
        assert_eq!(o.get(k).map(String::as_str), Some(v), "{k}: {o:?}")
    };
    want(&fast, "mbtree", "1");
    want(&fast, "rc_lookahead", "5");
    want(&fast, "bframes", "1");
    // tune=psnr: adaptive quantization at strength 0, no psy-RD.
    want(&fast, "aq", "1:0.00");
    want(&fast, "psy", "0");
    want(&fast, "cabac", "1");
    want(&fast, "crf", &format!("{}.0", Quality::Fast.crf()));
    let (fastest, fastest_len) = run_with(Quality::Fastest, 0.0);
    want(&fastest, "cabac", "0");
    want(&fastest, "crf", "23.0");
    assert!(
        fast_len < fastest_len,
        "fast {fast_len} bytes, fastest {fastest_len}"
    );
    let (capped, _) = run_with(Quality::Fast, 1.0);
    let cap: u64 = capped["vbv_maxrate"].parse().unwrap();
    assert!((300..=450).contains(&cap), "cap {cap}: {capped:?}");
}
