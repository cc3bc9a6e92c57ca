//! `obscura bench`: the numbers that say how close the pipeline is to the machine's limit,
//! measured the same way every time, in one run on one input.
//!
//! Owns: timing decode-only, transcode-only (same encoder settings, no AI) and the full
//! pipeline on the same file — wall-clock fps and CPU time per frame (the process's
//! `getrusage`, all threads: steadier than fps on a shared machine), the full/transcode ratios
//! round by round (their spread is the machine's noise) —, N copies of the full
//! run at once, the detector alone at the sizes the pipeline uses (batch 1/8/32), the device
//! that ran (inference provider, video decoder, GPU memory), and — when the input has a
//! ground-truth file beside it (`X.gt.json`) — the leak rate of the full run.
//! Must not touch: the pipeline's behaviour; it only runs it in its modes, writing into a
//! scratch folder that is removed afterwards.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::config::Config;
use crate::detect::DetectorImage;
use crate::pipeline::{Control, Job, Mode, PipelineError};

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub input: String,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    pub runs: u32,
    /// Median frames per second of each mode.
    pub decode_only_fps: f64,
    pub transcode_only_fps: f64,
    pub full_fps: f64,
    /// full / transcode-only.
    pub full_vs_transcode: f64,
    /// Each round's full run against the transcode-only run just before it (fps), in run
    /// order: on a shared machine the spread says how far one figure can be trusted.
    pub full_vs_transcode_rounds: Vec<f64>,
    /// CPU milliseconds per frame of each mode (median run; all threads of the process).
    pub cpu_ms_per_frame: CpuPerFrame,
    /// transcode-only CPU / full CPU per frame: the share of the machine's limit the full
    /// pipeline reaches when the machine is saturated, measured without the wall clock.
    pub full_vs_transcode_cpu: f64,
    /// The same by CPU time, round by round.
    pub full_vs_transcode_cpu_rounds: Vec<f64>,
    /// `concurrent` full runs of the same input at once (absent with `--concurrent 0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<ConcurrentBench>,
    pub device: DeviceReport,
    /// Per-stage milliseconds per frame of the median full run.
    pub stage_ms_per_frame: crate::types::StageTimes,
    pub detector: DetectorBench,
    /// Voice activity detection in the full run: milliseconds per second of audio (absent
    /// without audio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vad_ms_per_audio_s: Option<f64>,
    /// Present when a ground truth file was found beside the input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leak: Option<LeakSummary>,
    /// Storage: the output's bytes against the input's (whole files, median full run).
    pub storage: StorageReport,
    /// The process's peak resident memory (VmHWM) after all runs, MiB: the largest that one
    /// clip at a time needed (runs go one after another unless `--concurrent`). Absent where
    /// /proc cannot tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    pub settings: BenchSettings,
    pub machine: Machine,
}

/// What the output costs to store, against the input.
#[derive(Debug, Clone, Serialize)]
pub struct StorageReport {
    pub input_bytes: u64,
    /// The median full run's output file.
    pub output_bytes: u64,
    /// output_bytes / input_bytes of the full run.
    pub output_per_input_byte: f64,
    /// The same for the transcode-only run (same encoder, no redaction; median run).
    pub transcode_output_per_input_byte: f64,
    /// The input's video bit rate as the probe read it (stated or estimated), kbit/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_video_kbps: Option<u32>,
    /// The x264 settings that ran: preset, CRF, tuning, the bit-rate cap (kbit/s, 0: none).
    pub preset: String,
    pub crf: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tune: Option<String>,
    pub max_kbps: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuPerFrame {
    pub decode_only: f64,
    pub transcode_only: f64,
    pub full: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConcurrentBench {
    pub files: usize,
    /// Frames of all files together per second of wall time.
    pub fps: f64,
    pub wall_s: f64,
}

/// What actually ran: `--device` asks, this says.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub requested: String,
    /// Execution provider of the face detector's session: "cpu" or "cuda".
    pub inference: String,
    /// GStreamer video decoder of the full run (`avdec_h264`: CPU; `nvh264dec`: NVDEC).
    pub video_decoder: Option<String>,
    /// GPU memory held by this process after the detector bench (from `nvidia-smi`); absent
    /// when inference ran on the CPU or `nvidia-smi` is not there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_mib: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchTiming {
    pub batch: usize,
    pub ms_per_frame: f64,
    pub fps: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchSettings {
    pub detector: String,
    pub detect_every: u32,
    pub detect_size: [u32; 2],
    pub zoom: Option<f32>,
    pub zoom_every: u32,
    /// Every n-th sweep covers the whole frame; the others only what changed.
    pub zoom_full_every: u32,
    /// Every n-th main pass covers the whole frame; on a still camera the others only what
    /// changed.
    pub main_full_every: u32,
    pub zoom_tiles: Vec<[u32; 2]>,
    /// Magnification of a sweep's first look (`detect.zoom_proposal_threshold`), if it
    /// looks first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zoom_proposal: Option<f32>,
    pub zoom_proposal_threshold: f32,
    pub quality: String,
    pub style: String,
    pub device: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DetectorBench {
    pub provider: String,
    /// Main pass: milliseconds per frame at `detect_size` (median of the timed runs).
    pub main_ms: f64,
    /// Zoom pass: milliseconds per sweep (all tiles of one frame), if the pass runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zoom_sweep_ms: Option<f64>,
    /// A sweep's first look over the whole frame (at the proposal magnification), if sweeps
    /// look first: what a full sweep costs when the proposals suffice, besides the magnified
    /// looks around them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zoom_proposal_ms: Option<f64>,
    /// The main size at each batch size asked for (default 1, 8, 32).
    pub batches: Vec<BatchTiming>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeakSummary {
    pub gt_boxes: u64,
    pub redacted: u64,
    pub leak_rate: f64,
    pub outside_unchanged: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub os: String,
    pub onnxruntime: String,
    pub date: String,
}

fn file_bytes(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// CPU seconds (user + system) used so far by all threads of this process.
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// GPU memory (MiB) this process holds, from `nvidia-smi`; `None` when it cannot tell.
fn gpu_memory_mib() -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    let pid = std::process::id().to_string();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (p, m) = l.split_once(',')?;
        (p.trim() == pid).then(|| m.trim().parse().ok())?
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs the benchmark on `input` with `cfg`, `runs` times per mode.
pub fn run(
    input: &Path,
    cfg: &Config,
    runs: u32,
    batches: &[usize],
    concurrent: usize,
) -> Result<BenchReport, PipelineError> {
    let scratch = tempfile::Builder::new()
        .prefix("obscura-bench-")
        .tempdir()
        .map_err(|source| PipelineError::Io {
            path: std::env::temp_dir(),
            what: "creating a scratch folder",
            source,
        })?;
    let info = crate::media::probe(input, std::time::Duration::from_secs(cfg.limits.probe_secs))?;
    let video = info.video.clone().ok_or_else(|| PipelineError::Invalid {
        path: input.to_path_buf(),
        message: "bench needs a video input".into(),
    })?;
    let mut times: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut cpu: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut full_runs = Vec::new();
    let mut frames = 0;
    let mut transcode_bytes = Vec::new();
    let runs = runs.max(1);
    for r in 0..runs {
        for (k, mode) in [Mode::DecodeOnly, Mode::TranscodeOnly, Mode::Redact]
            .into_iter()
            .enumerate()
        {
            let out = scratch.path().join(format!("run{r}-{k}.mp4"));
            let job = Job {
                input: input.to_path_buf(),
                output: out.clone(),
                sidecar: Some(scratch.path().join(format!("run{r}-{k}.json"))),
            };
            let (t, c) = (Instant::now(), process_cpu_s());
            let o = crate::pipeline::run(&job, cfg, &Control::default(), mode)?;
            let wall = t.elapsed().as_secs_f64();
            let cpu_s = process_cpu_s() - c;
            frames = o.sidecar.totals.frames;
            times[k].push(frames as f64 / wall);
            cpu[k].push(cpu_s * 1e3 / frames.max(1) as f64);
            if mode == Mode::Redact {
                full_runs.push((frames as f64 / wall, o));
            } else {
                if mode == Mode::TranscodeOnly {
                    transcode_bytes.push(file_bytes(&out) as f64);
                }
                let _ = std::fs::remove_file(&out);
            }
        }
    }
    // Round by round: the full run and the transcode-only run just before it saw about the
    // same load.
    let rounds = |num: &[f64], den: &[f64]| -> Vec<f64> {
        num.iter()
            .zip(den)
            .map(|(n, d)| if *d > 0.0 { round3(n / d) } else { 0.0 })
            .collect()
    };
    let fps_rounds = rounds(&times[2], &times[1]);
    let cpu_rounds = rounds(&cpu[1], &cpu[2]);
    let decode = median(times[0].clone());
    let transcode = median(times[1].clone());
    let full = median(times[2].clone());
    let cpu_ms = cpu.map(median);
    full_runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median_full = full_runs.swap_remove(full_runs.len() / 2).1;
    let concurrent = if concurrent > 0 {
        Some(run_concurrent(input, cfg, scratch.path(), concurrent)?)
    } else {
        None
    };

    let input_bytes = file_bytes(input);
    let output_bytes = file_bytes(&median_full.output);
    let per_input = |b: f64| {
        if input_bytes > 0 {
            round3(b / input_bytes as f64)
        } else {
            0.0
        }
    };
    let input_video_kbps = info.video_kbps(Some(input_bytes));
    let spec = cfg.encode.video_spec(input_video_kbps);
    let storage = StorageReport {
        input_bytes,
        output_bytes,
        output_per_input_byte: per_input(output_bytes as f64),
        transcode_output_per_input_byte: per_input(median(transcode_bytes)),
        input_video_kbps,
        preset: spec.preset,
        crf: spec.crf,
        tune: spec.tune,
        max_kbps: spec.max_kbps,
    };

    let gt_path = gt_beside(input);
    let leak = match gt_path.and_then(|p| crate::eval::GroundTruth::load(&p).ok()) {
        Some(gt) => {
            let r = crate::eval::evaluate(input, &median_full.output, &gt)?;
            Some(LeakSummary {
                gt_boxes: r.boxes,
                redacted: r.redacted,
                leak_rate: r.leak_rate,
                outside_unchanged: r.outside_unchanged,
            })
        }
        None => None,
    };

    let det_size = cfg.detect.input_size_for(video.width, video.height);
    let zoom = cfg.detect.zoom_for(video.width, video.height);
    let tiles = zoom
        .map(|z| crate::detect::zoom::layout(video.width, video.height, z))
        .unwrap_or_default();
    let proposal = cfg.detect.zoom_proposal_for(video.width, video.height);
    let first_look = proposal
        .map(|z| crate::detect::zoom::layout(video.width, video.height, z))
        .unwrap_or_default();
    let (detector, gpu_memory_mib) =
        bench_detector(input, cfg, det_size, &tiles, &first_look, batches)?;
    let lib = crate::detect::runtime::loaded_library()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(BenchReport {
        input: input.display().to_string(),
        width: video.width,
        height: video.height,
        frames,
        runs,
        decode_only_fps: round1(decode),
        transcode_only_fps: round1(transcode),
        full_fps: round1(full),
        full_vs_transcode: if transcode > 0.0 {
            (full / transcode * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        full_vs_transcode_rounds: fps_rounds,
        full_vs_transcode_cpu_rounds: cpu_rounds,
        cpu_ms_per_frame: CpuPerFrame {
            decode_only: round2(cpu_ms[0]),
            transcode_only: round2(cpu_ms[1]),
            full: round2(cpu_ms[2]),
        },
        full_vs_transcode_cpu: if cpu_ms[2] > 0.0 {
            (cpu_ms[1] / cpu_ms[2] * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        concurrent,
        device: DeviceReport {
            requested: cfg.runtime.device.to_string(),
            inference: detector.provider.clone(),
            video_decoder: median_full.video_decoder.clone(),
            gpu_memory_mib,
        },
        stage_ms_per_frame: median_full.sidecar.timing.stage_ms_per_frame.clone(),
        vad_ms_per_audio_s: median_full.sidecar.timing.vad_ms_per_audio_s,
        detector,
        leak,
        storage,
        peak_rss_mib: peak_rss_mib(),
        settings: BenchSettings {
            detector: cfg.detect.model.name().into(),
            detect_every: cfg.detect.every_for(video.fps()),
            detect_size: [det_size.0, det_size.1],
            zoom,
            zoom_every: cfg.zoom_every(video.width, video.height, video.fps()),
            zoom_full_every: cfg.detect.zoom_full_every,
            main_full_every: cfg.detect.main_full_every,
            zoom_tiles: tiles.iter().map(|t| [t.in_w, t.in_h]).collect(),
            zoom_proposal: proposal,
            zoom_proposal_threshold: cfg.detect.zoom_proposal_threshold,
            quality: format!("{:?}", cfg.encode.quality).to_lowercase(),
            style: cfg.redact.style.name().into(),
            device: cfg.runtime.device.to_string(),
        },
        machine: Machine {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            os: std::env::consts::OS.into(),
            onnxruntime: lib,
            date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        },
    })
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `n` full runs of `input` at once, each on its own thread (as `batch --jobs n` runs files).
fn run_concurrent(
    input: &Path,
    cfg: &Config,
    scratch: &Path,
    n: usize,
) -> Result<ConcurrentBench, PipelineError> {
    let t = Instant::now();
    let results: Vec<Result<u64, PipelineError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let job = Job {
                    input: input.to_path_buf(),
                    output: scratch.join(format!("concurrent{i}.mp4")),
                    sidecar: Some(scratch.join(format!("concurrent{i}.json"))),
                };
                s.spawn(move || {
                    crate::pipeline::run(&job, cfg, &Control::default(), Mode::Redact)
                        .map(|o| o.sidecar.totals.frames)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(PipelineError::Internal {
                        path: input.to_path_buf(),
                        message: "a concurrent bench run panicked".into(),
                    })
                })
            })
            .collect()
    });
    let wall = t.elapsed().as_secs_f64();
    let mut frames = 0;
    for r in results {
        frames += r?;
    }
    Ok(ConcurrentBench {
        files: n,
        fps: round1(frames as f64 / wall),
        wall_s: (wall * 1000.0).round() / 1000.0,
    })
}

/// `X.gt.json` beside `X.mp4`.
pub fn gt_beside(input: &Path) -> Option<PathBuf> {
    let p = input.with_extension("gt.json");
    p.is_file().then_some(p)
}

/// Times the detector alone: the main pass at its size (batch 1 and the given batch sizes),
/// one zoom sweep over `tiles` and one first look over `first_look`, on a synthetic mid-grey
/// image (the network's cost does not depend on the content).
fn bench_detector(
    input: &Path,
    cfg: &Config,
    (w, h): (u32, u32),
    tiles: &[crate::detect::zoom::Tile],
    first_look: &[crate::detect::zoom::Tile],
    batches: &[usize],
) -> Result<(DetectorBench, Option<u64>), PipelineError> {
    let opts = cfg.runtime.session_options();
    let mut det = crate::detect::load_face_detector(
        cfg.detect.model,
        cfg.runtime.models_dir.as_deref(),
        cfg.detect.threshold,
        &opts,
    )
    .map_err(|source| PipelineError::Detect {
        path: input.to_path_buf(),
        source,
    })?;
    let err = |source| PipelineError::Detect {
        path: input.to_path_buf(),
        source,
    };
    let mut time = |w: u32, h: u32, n: usize, reps: usize| -> Result<f64, PipelineError> {
        let data = vec![128u8; (w * h * 3) as usize];
        let imgs: Vec<DetectorImage<'_>> = (0..n)
            .map(|_| DetectorImage {
                data: &data,
                width: w,
                height: h,
                stride: (w * 3) as usize,
            })
            .collect();
        det.detect(&imgs).map_err(err)?; // warm-up
        let mut v = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            det.detect(&imgs).map_err(err)?;
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(median(v))
    };
    let main_ms = time(w, h, 1, 9)?;
    let mut timings = Vec::new();
    for &b in batches.iter().filter(|&&b| b > 0) {
        let reps = if b >= 16 { 2 } else { 4 };
        let ms = time(w, h, b, reps)? / b as f64;
        timings.push(BatchTiming {
            batch: b,
            ms_per_frame: round2(ms),
            fps: round1(1e3 / ms.max(1e-9)),
        });
    }
    let mut sweep = |tiles: &[crate::detect::zoom::Tile]| -> Result<Option<f64>, PipelineError> {
        if tiles.is_empty() {
            return Ok(None);
        }
        let mut total = 0.0;
        for t in tiles {
            total += time(t.in_w, t.in_h, 1, 3)?;
        }
        Ok(Some((total * 10.0).round() / 10.0))
    };
    let zoom_sweep_ms = sweep(tiles)?;
    let zoom_proposal_ms = sweep(first_look)?;
    let provider = det.provider();
    let gpu = if provider == crate::detect::ActiveProvider::Cuda {
        gpu_memory_mib()
    } else {
        None
    };
    Ok((
        DetectorBench {
            provider: provider.name().into(),
            main_ms: round2(main_ms),
            zoom_sweep_ms,
            zoom_proposal_ms,
            batches: timings,
        },
        gpu,
    ))
}

/// The process's peak resident set (`VmHWM` of /proc/self/status), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
