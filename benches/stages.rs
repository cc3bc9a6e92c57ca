//! `cargo bench`: per-stage costs on real data (criterion). The end-to-end numbers —
//! decode-only, transcode-only and the full pipeline on the same clip — come from
//! `obscura bench` (see README), which this bench also runs once on the bundled 720p clip.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use obscura::detect::tracker::{Tracker, TrackerConfig};
use obscura::detect::zoom::{I420, layout, render_nchw};
use obscura::detect::{ChannelOrder, DetectorImage, ModelKind, SessionOptions, load_face_detector};
use obscura::geom::BoxF;
use obscura::redact::video::{PlaneMut, Style, StyleParams, redact_planes};
use obscura::types::Detection;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn faces_720p() -> Vec<BoxF> {
    // The ten face sizes of samples/faces_sizes.mp4, with the default margin.
    [
        120.0f32, 96.0, 64.0, 48.0, 40.0, 32.0, 24.0, 20.0, 16.0, 12.0,
    ]
    .iter()
    .enumerate()
    .map(|(i, &w)| {
        BoxF::new(
            40.0 + 110.0 * i as f32,
            100.0 + 40.0 * (i % 3) as f32,
            w,
            w * 1.15,
        )
        .enlarge(0.2)
    })
    .collect()
}

fn bench_redact(c: &mut Criterion) {
    let (w, h) = (1280usize, 720usize);
    let mut y: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
    let mut u = vec![128u8; w * h / 4];
    let mut v = vec![128u8; w * h / 4];
    let regions = faces_720p();
    for style in [Style::Blur, Style::Pixelate, Style::Ellipse, Style::Fill] {
        c.bench_function(&format!("redact 10 faces 720p {}", style.name()), |b| {
            b.iter(|| {
                let mut planes = [
                    PlaneMut {
                        data: &mut y,
                        stride: w,
                        width: w,
                        height: h,
                        sub: 1,
                        fill_value: 16,
                    },
                    PlaneMut {
                        data: &mut u,
                        stride: w / 2,
                        width: w / 2,
                        height: h / 2,
                        sub: 2,
                        fill_value: 128,
                    },
                    PlaneMut {
                        data: &mut v,
                        stride: w / 2,
                        width: w / 2,
                        height: h / 2,
                        sub: 2,
                        fill_value: 128,
                    },
                ];
                redact_planes(&mut planes, &regions, style, &StyleParams::default());
            })
        });
    }
}

fn bench_tracker(c: &mut Criterion) {
    let dets: Vec<Detection> = faces_720p()
        .into_iter()
        .map(|b| Detection {
            bbox: b,
            score: 0.9,
            revisit: 1,
        })
        .collect();
    c.bench_function("tracker 10 faces per frame", |b| {
        let mut t: Tracker<()> = Tracker::new(TrackerConfig {
            frame: Some((1280.0, 720.0)),
            ..Default::default()
        });
        let mut i = 0u64;
        b.iter(|| {
            let moved: Vec<Detection> = dets
                .iter()
                .map(|d| Detection {
                    bbox: BoxF::new(d.bbox.x + (i % 50) as f32, d.bbox.y, d.bbox.w, d.bbox.h),
                    ..*d
                })
                .collect();
            let _ = t.push(i, (), Some(&moved));
            i += 1;
        })
    });
}

/// Planes of a synthetic 720p frame: textured luma, neutral chroma.
fn planes_720p() -> (usize, usize, Vec<u8>, Vec<u8>) {
    let (w, h) = (1280usize, 720usize);
    let y: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
    (w, h, y, vec![128u8; w * h / 4])
}

fn i420<'a>(w: usize, h: usize, y: &'a [u8], uv: &'a [u8]) -> I420<'a> {
    I420 {
        y,
        u: uv,
        v: uv,
        strides: [w, w / 2, w / 2],
        width: w as u32,
        height: h as u32,
    }
}

fn bench_zoom_render(c: &mut Criterion) {
    let (w, h, y, uv) = planes_720p();
    let frame = i420(w, h, &y, &uv);
    let tiles = layout(w as u32, h as u32, 2.0);
    let mut out = vec![
        0f32;
        tiles
            .iter()
            .map(|t| 3 * (t.in_w * t.in_h) as usize)
            .max()
            .unwrap_or(0)
    ];
    c.bench_function(
        "zoom render 720p at 2x (all tiles, into the NCHW tensor)",
        |b| {
            b.iter(|| {
                for t in &tiles {
                    render_nchw(&frame, t, ChannelOrder::Bgr, &mut out);
                    std::hint::black_box(&out);
                }
            })
        },
    );
}

/// The main pass's input at 720p: the whole frame shrunk to 576x320 (area filter) straight into
/// the NCHW tensor (`detect::shrink`; GStreamer's `videoscale ! videoconvert` did this before).
fn bench_shrink(c: &mut Criterion) {
    use obscura::detect::shrink::{ShrinkScratch, shrink_nchw};
    let (w, h, y, uv) = planes_720p();
    let frame = i420(w, h, &y, &uv);
    let (ow, oh) = (576usize, 320usize);
    let mut out = vec![0f32; 3 * ow * oh];
    let mut scratch = ShrinkScratch::default();
    c.bench_function("shrink 720p to 576x320 (main pass input, NCHW)", |b| {
        b.iter(|| {
            shrink_nchw(&frame, ow, oh, ChannelOrder::Bgr, &mut scratch, &mut out);
            std::hint::black_box(&out);
        })
    });
}

/// The zoom pass's change test at 720p: a still camera (no block changed) and a pan (the
/// picture moved by (-12, 4): the motion search runs, then the shifted block test).
fn bench_zoom_change(c: &mut Criterion) {
    use obscura::detect::zoom::ChangeSet;
    let (w, h) = (1280usize, 720usize);
    // Detail at several scales (a hash on grids of 32, 8 and 1 px), like a photo.
    let hash = |x: usize, y: usize, s: usize| {
        let v = ((x / s) as u64 * 73_856_093) ^ ((y / s) as u64 * 19_349_663) ^ (s as u64);
        (v.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize
    };
    let scene: Vec<u8> = (0..(w + 64) * (h + 64))
        .map(|i| {
            let (x, y) = (i % (w + 64), i / (w + 64));
            (hash(x, y, 32) * 2 + hash(x, y, 8) + hash(x, y, 1) / 2) as u8
        })
        .collect();
    let window = |x0: usize, y0: usize| -> Vec<u8> {
        (0..h)
            .flat_map(|y| scene[(y0 + y) * (w + 64) + x0..][..w].iter().copied())
            .collect()
    };
    let (prev, panned) = (window(20, 20), window(32, 16));
    c.bench_function("zoom change test 720p, still camera", |b| {
        b.iter(|| std::hint::black_box(ChangeSet::between(&prev, &prev, w, 1280, 720, 34)))
    });
    assert_eq!(
        ChangeSet::between(&prev, &panned, w, 1280, 720, 34).map(|c| c.shift()),
        Some((-12, 4))
    );
    c.bench_function("zoom change test 720p, pan followed", |b| {
        b.iter(|| std::hint::black_box(ChangeSet::between(&prev, &panned, w, 1280, 720, 34)))
    });
}

fn bench_detector(c: &mut Criterion) {
    let Ok(mut det) = load_face_detector(
        ModelKind::Yunet,
        Some(&repo().join("models")),
        0.5,
        &SessionOptions::default(),
    ) else {
        eprintln!(
            "skipping detector benches: ONNX Runtime or the model is missing (run scripts/setup.sh)"
        );
        return;
    };
    let mut group = c.benchmark_group("yunet");
    group.sample_size(20);
    for (w, h) in [(576u32, 320u32), (864, 480), (1344, 800)] {
        let data = vec![128u8; (w * h * 3) as usize];
        let img = DetectorImage {
            data: &data,
            width: w,
            height: h,
            stride: (w * 3) as usize,
        };
        group.throughput(criterion::Throughput::Elements(1));
        group.bench_function(format!("{w}x{h} batch 1"), |b| {
            b.iter(|| det.detect(&[img]).unwrap())
        });
    }
    // Batching several frames into one run (the main pass's size): frames per second.
    let (w, h) = (576u32, 320u32);
    let data = vec![128u8; (w * h * 3) as usize];
    for n in [8usize, 32] {
        let imgs = vec![
            DetectorImage {
                data: &data,
                width: w,
                height: h,
                stride: (w * 3) as usize,
            };
            n
        ];
        group.throughput(criterion::Throughput::Elements(n as u64));
        group.bench_function(format!("{w}x{h} batch {n}"), |b| {
            b.iter(|| det.detect(&imgs).unwrap())
        });
    }
    group.finish();
}

fn bench_end_to_end(c: &mut Criterion) {
    let input = repo().join("samples/faces_sizes.mp4");
    let mut cfg = obscura::config::Config::default();
    cfg.runtime.models_dir = Some(repo().join("models"));
    let mut group = c.benchmark_group("end to end 720p 240 frames");
    group.sample_size(10);
    group.throughput(criterion::Throughput::Elements(240));
    let dir = tempfile::tempdir().unwrap();
    for (name, mode) in [
        ("decode only", obscura::pipeline::Mode::DecodeOnly),
        ("transcode only", obscura::pipeline::Mode::TranscodeOnly),
        ("full pipeline", obscura::pipeline::Mode::Redact),
    ] {
        let job = obscura::pipeline::Job {
            input: input.clone(),
            output: dir.path().join("o.mp4"),
            sidecar: None,
        };
        if obscura::pipeline::run(&job, &cfg, &Default::default(), mode).is_err() {
            eprintln!(
                "skipping end-to-end benches: the pipeline cannot run here (run scripts/setup.sh)"
            );
            return;
        }
        group.bench_function(name, |b| {
            b.iter(|| obscura::pipeline::run(&job, &cfg, &Default::default(), mode).unwrap())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_redact,
    bench_tracker,
    bench_zoom_render,
    bench_shrink,
    bench_zoom_change,
    bench_detector,
    bench_end_to_end
);
criterion_main!(benches);
