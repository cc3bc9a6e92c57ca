//! `obscura batch`: redact a folder tree (or a list of files) into a mirrored output tree,
//! several files at a time, resumable, with a machine-readable report.
//!
//! Owns: finding the inputs, mapping them to outputs, the worker pool, skipping work already
//! done (`--resume`: the committed sidecar names the input's sha256 and the settings'
//! fingerprint), and `report.json`. Must not touch: media processing itself (`pipeline`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::config::Config;
use crate::pipeline::{Control, Job, redact_file};

/// One input and where its output goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub input: PathBuf,
    pub output: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub input: String,
    pub output: String,
    /// ok | skipped | failed
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub frames: u64,
    pub face_tracks: u64,
    pub speech_s: f64,
    pub wall_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub started_at: String,
    pub finished_at: String,
    pub settings_sha256: String,
    pub jobs: usize,
    pub files: Vec<FileReport>,
    pub ok: usize,
    pub skipped: usize,
    pub failed: usize,
    pub frames: u64,
    pub wall_s: f64,
}

/// Media extensions picked up when walking a folder (case-insensitive).
const MEDIA_EXT: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "ts", "mts", "m2ts", "mpg", "mpeg", "3gp", "flv",
    "wmv", "mjpeg", "wav", "flac", "mp3", "m4a", "aac", "ogg", "oga", "opus",
];
const AUDIO_EXT: &[&str] = &["wav", "flac", "mp3", "m4a", "aac", "ogg", "oga", "opus"];

fn ext_of(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The output path for `rel` under `out`: the same relative path, with `.mp4` for video
/// containers and the same extension for audio-only files.
pub fn output_for(out: &Path, rel: &Path) -> PathBuf {
    let e = ext_of(rel);
    let target = out.join(rel);
    if AUDIO_EXT.contains(&e.as_str()) {
        target
    } else {
        target.with_extension("mp4")
    }
}

/// Finds the inputs: every media file under a folder (recursively, sorted, hidden entries and
/// temporary files skipped), the lines of a list file (`.txt`/`.list`), standard input for `-`,
/// or one media file.
pub fn collect(input: &Path, out: &Path) -> std::io::Result<Vec<Item>> {
    let mut items = Vec::new();
    if input == Path::new("-") {
        for line in std::io::stdin().lock().lines() {
            push_listed(&mut items, out, &line?);
        }
    } else if input.is_dir() {
        let mut files = Vec::new();
        walk(input, &mut files)?;
        files.sort();
        for f in files {
            let rel = f.strip_prefix(input).unwrap_or(&f).to_path_buf();
            items.push(Item {
                output: output_for(out, &rel),
                input: f,
            });
        }
    } else if matches!(ext_of(input).as_str(), "txt" | "list") {
        let text = std::fs::read_to_string(input)?;
        for line in text.lines() {
            push_listed(&mut items, out, line);
        }
    } else {
        let name = input
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("input"));
        items.push(Item {
            input: input.to_path_buf(),
            output: output_for(out, &name),
        });
    }
    // Two listed files with the same name must not write one output.
    let mut seen = std::collections::HashSet::new();
    for it in items.iter_mut() {
        let mut candidate = it.output.clone();
        let mut n = 1;
        while !seen.insert(candidate.clone()) {
            let stem = it
                .output
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("out");
            let ext = it
                .output
                .extension()
                .and_then(|s| s.to_str())
                .unwrap_or("mp4");
            candidate = it.output.with_file_name(format!("{stem}-{n}.{ext}"));
            n += 1;
        }
        it.output = candidate;
    }
    Ok(items)
}

fn push_listed(items: &mut Vec<Item>, out: &Path, line: &str) {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') {
        return;
    }
    let p = PathBuf::from(l);
    let name = p
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("input"));
    items.push(Item {
        output: output_for(out, &name),
        input: p,
    });
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let ft = e.file_type()?;
        let p = e.path();
        if ft.is_dir() {
            walk(&p, files)?;
        } else if ft.is_file() && MEDIA_EXT.contains(&ext_of(&p).as_str()) {
            files.push(p);
        }
    }
    Ok(())
}

/// Whether `item` was completed by an earlier run with the same input and settings.
fn already_done(item: &Item, settings: &str) -> bool {
    let mut sc = item.output.clone().into_os_string();
    sc.push(".json");
    let Ok(bytes) = std::fs::read(&sc) else {
        return false;
    };
    let Ok(s) = serde_json::from_slice::<crate::types::Sidecar>(&bytes) else {
        return false;
    };
    if s.settings_sha256.as_deref() != Some(settings) || !item.output.is_file() {
        return false;
    }
    let Ok(out_sha) = crate::fsutil::sha256_file(&item.output) else {
        return false;
    };
    let Ok(in_sha) = crate::fsutil::sha256_file(&item.input) else {
        return false;
    };
    out_sha == s.output.sha256 && in_sha == s.input.sha256
}

/// Runs the batch; `on_done` is called after each file (for progress).
pub fn run(
    items: &[Item],
    cfg: &Config,
    jobs: usize,
    resume: bool,
    ctl: &Control,
    on_done: &(dyn Fn(&FileReport, usize) + Sync),
) -> BatchReport {
    let started = chrono::Utc::now();
    let t0 = std::time::Instant::now();
    let settings = cfg.fingerprint();
    // What a killed earlier run left in the output folders (temporary outputs, sidecars,
    // the report) goes first, also where every file is then skipped.
    let folders: std::collections::BTreeSet<&std::path::Path> =
        items.iter().filter_map(|it| it.output.parent()).collect();
    for d in folders {
        crate::fsutil::sweep_stale(d, None);
    }
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<FileReport>>> = Mutex::new(vec![None; items.len()]);
    let jobs = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    if ctl.cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { return };
                    let r = process(item, cfg, resume, ctl);
                    let n = finished.fetch_add(1, Ordering::Relaxed) + 1;
                    on_done(&r, n);
                    if let Ok(mut v) = results.lock() {
                        v[i] = Some(r);
                    }
                }
            });
        }
    });
    let files: Vec<FileReport> = results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .zip(items)
        .map(|(r, it)| {
            r.unwrap_or_else(|| FileReport {
                input: it.input.display().to_string(),
                output: it.output.display().to_string(),
                status: "failed".into(),
                class: Some("cancelled".into()),
                error: Some("not processed: the batch was interrupted".into()),
                frames: 0,
                face_tracks: 0,
                speech_s: 0.0,
                wall_s: 0.0,
            })
        })
        .collect();
    let count = |s: &str| files.iter().filter(|f| f.status == s).count();
    BatchReport {
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        settings_sha256: settings,
        jobs,
        ok: count("ok"),
        skipped: count("skipped"),
        failed: count("failed"),
        frames: files.iter().map(|f| f.frames).sum(),
        wall_s: (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        files,
    }
}

/// Processes one file. Its run shares the batch's cancel flag (an interrupt stops the files
/// in progress, not only the batch's next ones) and adds its frames to the batch's
/// `frames_done` (live progress); the expected total stays the file's own.
fn process(item: &Item, cfg: &Config, resume: bool, batch_ctl: &Control) -> FileReport {
    let mut rep = FileReport {
        input: item.input.display().to_string(),
        output: item.output.display().to_string(),
        status: "ok".into(),
        class: None,
        error: None,
        frames: 0,
        face_tracks: 0,
        speech_s: 0.0,
        wall_s: 0.0,
    };
    if resume && already_done(item, &cfg.fingerprint()) {
        rep.status = "skipped".into();
        return rep;
    }
    if let Some(dir) = item.output.parent()
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        rep.status = "failed".into();
        rep.class = Some("io".into());
        rep.error = Some(format!("{}: {e}", dir.display()));
        return rep;
    }
    let t = std::time::Instant::now();
    let job = Job {
        input: item.input.clone(),
        output: item.output.clone(),
        sidecar: None,
    };
    let ctl = Control {
        frames_done: batch_ctl.frames_done.clone(),
        frames_total: Default::default(),
        cancel: batch_ctl.cancel.clone(),
    };
    match redact_file(&job, cfg, &ctl) {
        Ok(o) => {
            rep.frames = o.sidecar.totals.frames;
            rep.face_tracks = o.sidecar.totals.tracks;
            rep.speech_s = o.sidecar.totals.speech_s;
        }
        Err(e) => {
            rep.status = "failed".into();
            rep.class = Some(e.class().into());
            rep.error = Some(e.to_string());
        }
    }
    rep.wall_s = (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_mirror_the_tree_and_become_mp4_unless_audio() {
        let out = Path::new("/o");
        assert_eq!(
            output_for(out, Path::new("sub/x.mkv")),
            PathBuf::from("/o/sub/x.mp4")
        );
        assert_eq!(
            output_for(out, Path::new("sub/x.mp4")),
            PathBuf::from("/o/sub/x.mp4")
        );
        assert_eq!(
            output_for(out, Path::new("a/b.flac")),
            PathBuf::from("/o/a/b.flac")
        );
    }

    #[test]
    fn walking_finds_media_sorted_and_skips_hidden_and_temporary_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("b/c")).unwrap();
        for f in [
            "b/c/z.mp4",
            "a.MKV",
            ".hidden.mp4",
            "b/.obscura-tmp-1-2-x.mp4",
            "notes.txt",
            "b/y.wav",
        ] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let items = collect(d.path(), Path::new("/out")).unwrap();
        let rel: Vec<String> = items
            .iter()
            .map(|i| i.output.display().to_string())
            .collect();
        assert_eq!(rel, vec!["/out/a.mp4", "/out/b/c/z.mp4", "/out/b/y.wav"]);
    }
}
