//! Rotated inputs (issue #30): a phone or body-camera file stores its pixels sideways and an
//! MP4 display matrix turns them upright. Obscura applies that orientation when decoding, so
//! detection sees the picture a viewer sees, and the output holds upright pixels with no
//! rotation.
//!
//! The rotated clips are made here from `samples/faces_sizes.mp4`: decoded, turned sideways by
//! `videoflip` (the inverse of the orientation), x264-encoded and muxed by mp4mux with the
//! audio, then the video track's `tkhd` display matrix is written as a phone would write it
//! (GStreamer 1.22's mp4mux writes no matrix from an `image-orientation` tag). qtdemux reads the
//! matrix back as the tag, which the probe must report. The displayed picture is the original,
//! so the original ground truth applies unchanged. An upright clip made the same way (same
//! encoder, identity matrix) is the baseline each rotated one is compared with.
//!
//! Real GStreamer, real YuNet, default settings; outcomes only, no timings.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use obscura::eval::{GroundTruth, evaluate};
use obscura::media::Orientation;
use obscura::pipeline::{Control, Job, redact_file};

/// The display matrix (a, b, c, d of the 16.16 [a b u; c d v; x y w] of ISO/IEC 14496-12) for an
/// orientation, as qtdemux maps it back to the `image-orientation` tag.
fn matrix(o: Orientation) -> [i32; 4] {
    match o {
        Orientation::Identity => [1, 0, 0, 1],
        Orientation::Rotate90 => [0, 1, -1, 0],
        Orientation::Rotate180 => [-1, 0, 0, -1],
        Orientation::Rotate270 => [0, -1, 1, 0],
        Orientation::FlipRotate0 => [-1, 0, 0, 1],
        other => panic!("no test clip for {other:?}"),
    }
}

/// `videoflip` direction that stores the upright picture so that `o` turns it back.
fn stored_as(o: Orientation) -> &'static str {
    match o {
        Orientation::Identity => "identity",
        Orientation::Rotate90 => "90l",
        Orientation::Rotate180 => "180",
        Orientation::Rotate270 => "90r",
        Orientation::FlipRotate0 => "horiz",
        other => panic!("no test clip for {other:?}"),
    }
}

/// Child boxes of an MP4 box body: (type, start of body, end).
fn boxes(data: &[u8], from: usize, to: usize) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut at = from;
    while at + 8 <= to {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[at + 4..at + 8].try_into().unwrap();
        let (header, size) = match size {
            1 => (
                16,
                u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap()) as usize,
            ),
            0 => (8, to - at),
            s => (8, s),
        };
        assert!(
            size >= header && at + size <= to,
            "MP4 box {kind:?} out of bounds"
        );
        out.push((kind, at + header, at + size));
        at += size;
    }
    out
}

fn child(data: &[u8], from: usize, to: usize, kind: &[u8; 4]) -> Option<(usize, usize)> {
    boxes(data, from, to)
        .into_iter()
        .find(|(k, _, _)| k == kind)
        .map(|(_, s, e)| (s, e))
}

/// Byte offset of the video track's `tkhd` matrix (36 bytes) in an MP4 file.
fn video_matrix_at(data: &[u8]) -> usize {
    let (ms, me) = child(data, 0, data.len(), b"moov").expect("moov");
    for (kind, ts, te) in boxes(data, ms, me) {
        if &kind != b"trak" {
            continue;
        }
        let (ds, de) = child(data, ts, te, b"mdia").expect("mdia");
        let (hs, _) = child(data, ds, de, b"hdlr").expect("hdlr");
        // version/flags (4), pre_defined (4), handler_type (4)
        if &data[hs + 8..hs + 12] != b"vide" {
            continue;
        }
        let (ks, _) = child(data, ts, te, b"tkhd").expect("tkhd");
        let fields = if data[ks] == 1 {
            8 + 8 + 4 + 4 + 8
        } else {
            4 + 4 + 4 + 4 + 4
        };
        // + version/flags (4) + reserved (8) + layer, alternate group, volume, reserved (8)
        return ks + 4 + fields + 8 + 8;
    }
    panic!("no video track");
}

fn read_matrix(path: &Path) -> [i32; 4] {
    let data = std::fs::read(path).unwrap();
    let at = video_matrix_at(&data);
    let v = |i: usize| i32::from_be_bytes(data[at + 4 * i..at + 4 * i + 4].try_into().unwrap());
    [v(0) >> 16, v(1) >> 16, v(3) >> 16, v(4) >> 16]
}

fn write_matrix(path: &Path, m: [i32; 4]) {
    let mut data = std::fs::read(path).unwrap();
    let at = video_matrix_at(&data);
    let fixed = |v: i32| (v << 16).to_be_bytes();
    let words: [[u8; 4]; 9] = [
        fixed(m[0]),
        fixed(m[1]),
        [0; 4],
        fixed(m[2]),
        fixed(m[3]),
        [0; 4],
        [0; 4],
        [0; 4],
        (1i32 << 30).to_be_bytes(),
    ];
    for (i, w) in words.iter().enumerate() {
        data[at + 4 * i..at + 4 * i + 4].copy_from_slice(w);
    }
    std::fs::write(path, data).unwrap();
}

/// faces_sizes.mp4 stored turned by the inverse of `o`, with a display matrix saying `o`.
fn make_clip(dir: &Path, o: Orientation) -> PathBuf {
    let src = common::sample("faces_sizes.mp4");
    let out = dir.join(format!("{}.mp4", o.tag()));
    common::gst_launch(&format!(
        "filesrc location={src} ! qtdemux name=d \
         d.video_0 ! queue ! decodebin ! videoconvert ! videoflip video-direction={dir} \
         ! x264enc speed-preset=ultrafast ! mp4mux name=m ! filesink location={out} \
         d.audio_0 ! queue ! aacparse ! m.",
        src = src.display(),
        dir = stored_as(o),
        out = out.display(),
    ));
    write_matrix(&out, matrix(o));
    out
}

struct Run {
    input: obscura::media::MediaInfo,
    output: obscura::media::MediaInfo,
    output_matrix: [i32; 4],
    sidecar_orientation: Option<String>,
    boxes: u64,
    frames: (u64, u64),
    leaked: usize,
    leak_rate: f64,
}

fn redact_clip(input: &Path, dir: &Path) -> Run {
    redact_clip_with(input, dir, &common::config())
}

fn redact_clip_with(input: &Path, dir: &Path, cfg: &obscura::config::Config) -> Run {
    let output = dir.join(format!(
        "{}.redacted.mp4",
        input.file_stem().unwrap().to_string_lossy()
    ));
    let job = Job {
        input: input.to_path_buf(),
        output,
        sidecar: None,
    };
    let out = redact_file(&job, cfg, &Control::default()).expect("redacted");
    let gt = GroundTruth::load(&common::sample("faces_sizes.gt.json")).unwrap();
    let rep = evaluate(input, &out.output, &gt).unwrap();
    let probe = |p: &Path| obscura::media::probe(p, Duration::from_secs(20)).unwrap();
    let run = Run {
        input: probe(input),
        output: probe(&out.output),
        output_matrix: read_matrix(&out.output),
        sidecar_orientation: out
            .sidecar
            .input
            .video
            .as_ref()
            .and_then(|v| v.orientation.clone()),
        boxes: rep.boxes,
        frames: (rep.frames_input, rep.frames_output),
        leaked: rep.leaks.len(),
        leak_rate: rep.leak_rate,
    };
    println!(
        "{}: {} boxes, {} leaked (rate {:.4}), frames {:?}, output {}x{}",
        input.display(),
        run.boxes,
        run.leaked,
        run.leak_rate,
        run.frames,
        run.output.video.as_ref().unwrap().width,
        run.output.video.as_ref().unwrap().height,
    );
    run
}

/// The upright clip made the same way (same encoder, identity matrix), redacted once.
fn upright() -> &'static Run {
    static UPRIGHT: OnceLock<(tempfile::TempDir, Run)> = OnceLock::new();
    &UPRIGHT
        .get_or_init(|| {
            let dir = common::scratch();
            let clip = make_clip(dir.path(), Orientation::Identity);
            let run = redact_clip(&clip, dir.path());
            (dir, run)
        })
        .1
}

fn rotated_clip_is_redacted_upright(o: Orientation) {
    rotated_clip_is_redacted_upright_with(o, &common::config());
}

fn rotated_clip_is_redacted_upright_with(o: Orientation, cfg: &obscura::config::Config) {
    let base = upright();
    let dir = common::scratch();
    let clip = make_clip(dir.path(), o);
    let run = redact_clip_with(&clip, dir.path(), cfg);
    let (vi, vb) = (
        run.input.video.as_ref().unwrap(),
        base.input.video.as_ref().unwrap(),
    );
    // The probe reads the matrix and reports the displayed size.
    assert_eq!(vi.orientation, o, "probed orientation of the input");
    assert_eq!(
        (vi.width, vi.height),
        (vb.width, vb.height),
        "displayed size"
    );
    // The output: the displayed (upright) size, no rotation, same frames and duration.
    let vo = run.output.video.as_ref().unwrap();
    assert_eq!((vo.width, vo.height), (vb.width, vb.height), "output size");
    assert_eq!(
        vo.orientation,
        Orientation::Identity,
        "output plays upright"
    );
    assert_eq!(run.output_matrix, [1, 0, 0, 1], "identity display matrix");
    assert_eq!((vo.fps_n, vo.fps_d), (vi.fps_n, vi.fps_d));
    assert_eq!(run.frames.0, run.frames.1, "same number of frames");
    assert_eq!(run.frames, base.frames);
    assert!(
        (run.output.duration_s() - run.input.duration_s()).abs() <= 1.0 / vi.fps() + 0.05,
        "duration {} vs {}",
        run.output.duration_s(),
        run.input.duration_s()
    );
    assert!(run.output.audio.is_some(), "audio kept");
    assert_eq!(run.sidecar_orientation.as_deref(), Some(o.tag()));
    // Detection saw the upright picture: the original ground truth, in display coordinates,
    // is all evaluated and leaks no more than in the upright clip (slack: one box in 400,
    // for the re-encode of differently laid out pixels).
    assert_eq!(run.boxes, base.boxes, "every ground-truth box evaluated");
    assert!(
        run.leak_rate <= base.leak_rate + 0.0025,
        "{o:?}: leak {} ({} boxes) vs upright {} ({} boxes)",
        run.leak_rate,
        run.leaked,
        base.leak_rate,
        base.leaked
    );
}

#[test]
fn rotated_90_is_detected_upright_and_written_upright() {
    rotated_clip_is_redacted_upright(Orientation::Rotate90);
}

#[test]
fn rotated_180_is_detected_upright_and_written_upright() {
    rotated_clip_is_redacted_upright(Orientation::Rotate180);
}

#[test]
fn rotated_270_is_detected_upright_and_written_upright() {
    rotated_clip_is_redacted_upright(Orientation::Rotate270);
}

#[test]
fn mirrored_matrix_is_detected_upright_and_written_upright() {
    rotated_clip_is_redacted_upright(Orientation::FlipRotate0);
}

/// `limits.decode_twice`: the second decode turns the frames the same way as the first, so
/// the boxes found on the first meet upright frames again.
#[test]
fn rotated_90_decoded_twice_is_redacted_as_when_held() {
    let mut cfg = common::config();
    cfg.limits.decode_twice = obscura::config::DecodeTwice::Always;
    rotated_clip_is_redacted_upright_with(Orientation::Rotate90, &cfg);
}

/// Regression: an unrotated file is redacted as before — its own size, identity orientation,
/// no orientation in the sidecar, every frame kept, leaks within the ground-truth test's bound.
#[test]
fn an_unrotated_file_is_unchanged() {
    let dir = common::scratch();
    let input = common::sample("faces_sizes.mp4");
    let run = redact_clip(&input, dir.path());
    let (vi, vo) = (
        run.input.video.as_ref().unwrap(),
        run.output.video.as_ref().unwrap(),
    );
    assert_eq!(vi.orientation, Orientation::Identity);
    assert_eq!(vo.orientation, Orientation::Identity);
    assert_eq!((vo.width, vo.height), (vi.width, vi.height));
    assert_eq!(run.output_matrix, [1, 0, 0, 1]);
    assert_eq!(run.sidecar_orientation, None);
    assert_eq!(run.frames.0, run.frames.1);
    assert!(run.boxes > 800, "{}", run.boxes);
    assert!(run.leak_rate <= 0.01, "leak rate {}", run.leak_rate);
    // The upright clip made by the test's own encoder: same size and frames, untouched.
    let base = upright();
    assert_eq!(
        base.input.video.as_ref().unwrap().orientation,
        Orientation::Identity
    );
    assert_eq!(base.sidecar_orientation, None);
    assert_eq!(base.frames, run.frames);
}
