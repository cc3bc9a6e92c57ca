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

/// What walking a folder found and left out, and why (the report's `ignored`): a file is
/// never passed over without a word.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ignored {
    pub path: String,
    pub reason: String,
}

/// The files to process, and what a folder walk passed over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    pub items: Vec<Item>,
    pub ignored: Vec<Ignored>,
}

/// Why [`collect`] refused the input as a whole.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--out {} is the input folder itself: outputs would land beside the originals and be walked as inputs by the next run; choose another folder (a sub-folder is fine)",
        .0.display()
    )]
    OutIsInput(PathBuf),
    #[error("--out {}: exists and is not a folder", .0.display())]
    OutNotFolder(PathBuf),
    #[error("{}: not found (give a folder, a list file .txt/.list, - for stdin, or a media file)", .0.display())]
    InputNotFound(PathBuf),
}

/// `map_err` for an I/O error at `path`.
fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CollectError + use<> {
    let path = path.to_path_buf();
    move |source| CollectError::Io { path, source }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub input: String,
    pub output: String,
    /// ok | skipped | failed | cancelled (an interrupt stopped it or it never started; not a
    /// fault of the file: `--resume` does it)
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
    /// false in the report written while the batch runs (every [`PARTIAL_REPORT_EVERY`]):
    /// `files` then holds only those finished, and `finished_at` is null.
    pub complete: bool,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Files not finished yet (0 once complete).
    pub pending: usize,
    pub settings_sha256: String,
    pub jobs: usize,
    pub files: Vec<FileReport>,
    /// Files a folder walk passed over (not media by their extension, symbolic links).
    pub ignored: Vec<Ignored>,
    pub ok: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Files an interrupt stopped or kept from starting.
    pub cancelled: usize,
    pub frames: u64,
    pub wall_s: f64,
}

/// Media extensions picked up when walking a folder (case-insensitive); other files are
/// listed in the report's `ignored`. Raw H.264/H.265 streams (`.h264`, `.264`, `.hevc`, …)
/// are what many recorders write.
const MEDIA_EXT: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "mka", "webm", "avi", "ts", "mts", "m2ts", "mpg", "mpeg", "3gp",
    "flv", "wmv", "asf", "mxf", "ogv", "mjpeg", "h264", "264", "h265", "265", "hevc", "wav",
    "flac", "mp3", "m4a", "aac", "ogg", "oga", "opus",
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

/// Finds the inputs: every media file under a folder (recursively, sorted; hidden entries,
/// temporary files and the output folder where it lies inside skipped; other files and
/// symbolic links listed as ignored), the lines of a list file (`.txt`/`.list`), standard
/// input for `-`, or one media file. Listed and named files are taken as they are; listed
/// ones are mirrored by their path as listed ([`listed_rel`]).
pub fn collect(input: &Path, out: &Path) -> Result<Inputs, CollectError> {
    collect_with(input, out, false)
}

/// [`collect`], and with `follow_links` a folder walk follows symbolic links (`--follow`):
/// a linked folder is walked once however many links reach it (loops included), a linked
/// file's output mirrors the link's path, and a file reached twice is done once.
pub fn collect_with(input: &Path, out: &Path, follow_links: bool) -> Result<Inputs, CollectError> {
    let mut items = Vec::new();
    let mut ignored = Vec::new();
    if out.exists() && !out.is_dir() {
        return Err(CollectError::OutNotFolder(out.to_path_buf()));
    }
    // A mistyped folder is said before anything is created, not reported as one failed file.
    if input != Path::new("-") && std::fs::symlink_metadata(input).is_err() {
        return Err(CollectError::InputNotFound(input.to_path_buf()));
    }
    let listed = if input == Path::new("-") {
        Some(
            std::io::stdin()
                .lock()
                .lines()
                .collect::<Result<Vec<_>, _>>()
                .map_err(io_at(input))?,
        )
    } else if !input.is_dir() && matches!(ext_of(input).as_str(), "txt" | "list") {
        let text = std::fs::read_to_string(input).map_err(io_at(input))?;
        Some(text.lines().map(str::to_owned).collect())
    } else {
        None
    };
    if let Some(lines) = listed {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        for line in &lines {
            push_listed(&mut items, out, &cwd, line);
        }
        drop_twice(&mut items, &mut ignored, "listed more than once");
    } else if input.is_dir() {
        // Outputs inside the input tree are not inputs of the next run.
        let input_real = std::fs::canonicalize(input).map_err(io_at(input))?;
        let out_real = std::fs::canonicalize(out).ok();
        if out_real.as_deref() == Some(input_real.as_path()) {
            return Err(CollectError::OutIsInput(out.to_path_buf()));
        }
        let mut walk = Walk {
            out: out_real,
            follow_links,
            walked: [input_real].into(),
            files: Vec::new(),
            ignored: Vec::new(),
        };
        walk.dir(input)?;
        let mut files = walk.files;
        ignored = walk.ignored;
        files.sort();
        for f in files {
            let rel = f.strip_prefix(input).unwrap_or(&f).to_path_buf();
            items.push(Item {
                output: output_for(out, &rel),
                input: f,
            });
        }
        if follow_links {
            drop_twice(&mut items, &mut ignored, "reached more than once");
        }
        ignored.sort_by(|a, b| a.path.cmp(&b.path));
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
    Ok(Inputs { items, ignored })
}

/// A file listed (or, following links, reached) more than once — under any spelling:
/// relative, absolute, through a link — is done once, where it comes first; the others are
/// listed as ignored. Paths that do not resolve stay, to fail with their own error.
fn drop_twice(items: &mut Vec<Item>, ignored: &mut Vec<Ignored>, how: &str) {
    let mut first = std::collections::HashMap::new();
    items.retain(|it| {
        let Ok(real) = std::fs::canonicalize(&it.input) else {
            return true;
        };
        match first.get(&real) {
            None => {
                first.insert(real, it.input.clone());
                true
            }
            Some(earlier) => {
                ignored.push(Ignored {
                    path: it.input.display().to_string(),
                    reason: format!("{how} (the same file as {})", earlier.display()),
                });
                false
            }
        }
    });
}

/// One line of a list: a path (relative ones from the current directory), blank lines and
/// `#` comments skipped. Its output mirrors the path as listed (see [`listed_rel`]).
fn push_listed(items: &mut Vec<Item>, out: &Path, cwd: &Path, line: &str) {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') {
        return;
    }
    let p = PathBuf::from(l);
    items.push(Item {
        output: output_for(out, &listed_rel(&p, cwd)),
        input: p,
    });
}

/// Where a listed file's output goes under `--out`, as `rsync --relative` and `tar` place
/// them: a relative path as written (`./site-a/cam1.mp4` → `site-a/cam1.mp4`, as a walk of
/// `.` would), an absolute one in full (`/archive/site-a/cam1.mp4` →
/// `archive/site-a/cam1.mp4`). So files of the same name in different folders keep apart, and
/// an output's place does not depend on what else the list holds (resume finds it again).
/// Only plain names come out: `.` is dropped, `..` taken back lexically, and a relative path
/// that climbs above `cwd` is placed by its absolute form, so nothing lands outside `--out`.
pub fn listed_rel(listed: &Path, cwd: &Path) -> PathBuf {
    use std::path::Component;
    // `..` above a relative path's start is None (placed by the absolute form instead);
    // above the root it stays at the root, as `/..` is `/`.
    let lexical = |p: &Path| -> Option<PathBuf> {
        let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(n) => parts.push(n),
                Component::ParentDir => {
                    if parts.pop().is_none() && !p.is_absolute() {
                        return None;
                    }
                }
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        Some(parts.iter().collect())
    };
    let rel = if listed.is_absolute() {
        lexical(listed)
    } else {
        lexical(listed).or_else(|| lexical(&cwd.join(listed)))
    };
    match rel {
        Some(r) if r.file_name().is_some() => r,
        _ => PathBuf::from("input"),
    }
}

/// A folder walk's state: the output folder (canonical; not entered), whether links are
/// followed, the folders walked (canonical; each once), what it found and passed over.
struct Walk {
    out: Option<PathBuf>,
    follow_links: bool,
    walked: std::collections::HashSet<PathBuf>,
    files: Vec<PathBuf>,
    ignored: Vec<Ignored>,
}

impl Walk {
    fn dir(&mut self, dir: &Path) -> Result<(), CollectError> {
        // In name order, so which of two links to one folder is walked does not depend on
        // the file system's order.
        let mut entries = std::fs::read_dir(dir)
            .map_err(io_at(dir))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_at(dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let p = e.path();
            let mut ft = e.file_type().map_err(io_at(&p))?;
            let reason = if name.starts_with(crate::fsutil::TEMP_PREFIX) {
                Some("an unfinished temporary file of an earlier run")
            } else if name.starts_with('.') {
                // `.Trash`, `.git`, macOS's `._clip.mp4` shadows: not footage, but said.
                Some(if ft.is_dir() {
                    "hidden folder (name starts with '.'; not entered)"
                } else {
                    "hidden file (name starts with '.'; list it to process it)"
                })
            } else if ft.is_symlink() && !self.follow_links {
                // A link can lead out of the tree or around in a loop: followed only when
                // asked (`--follow`).
                Some("symbolic link (not followed without --follow; or list its target)")
            } else if ft.is_symlink() {
                match std::fs::metadata(&p) {
                    Ok(m) => {
                        ft = m.file_type();
                        None
                    }
                    Err(_) => Some("broken symbolic link (its target does not exist)"),
                }
            } else {
                None
            };
            if let Some(reason) = reason {
                self.ignore(&p, reason);
            } else if ft.is_dir() {
                let real = std::fs::canonicalize(&p).map_err(io_at(&p))?;
                if self.out.as_deref() == Some(real.as_path()) {
                    continue;
                }
                if self.walked.insert(real) {
                    self.dir(&p)?;
                } else {
                    self.ignore(&p, "a folder already walked (a link loop or a second link)");
                }
            } else if !ft.is_file() {
                self.ignore(&p, "not a regular file");
            } else if MEDIA_EXT.contains(&ext_of(&p).as_str()) {
                self.files.push(p);
            } else {
                self.ignore(&p, "not a media file extension");
            }
        }
        Ok(())
    }

    fn ignore(&mut self, p: &Path, reason: &str) {
        self.ignored.push(Ignored {
            path: p.display().to_string(),
            reason: reason.into(),
        });
    }
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

/// How often a running batch rewrites its report (atomically) with the files finished so
/// far, so that a long batch killed hard still leaves a record of what it did.
pub const PARTIAL_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The report's fields around its file records.
struct ReportFrame<'a> {
    started: chrono::DateTime<chrono::Utc>,
    t0: std::time::Instant,
    settings: &'a str,
    jobs: usize,
    ignored: &'a [Ignored],
}

impl ReportFrame<'_> {
    fn report(&self, files: Vec<FileReport>, pending: usize, complete: bool) -> BatchReport {
        let count = |s: &str| files.iter().filter(|f| f.status == s).count();
        let stamp =
            |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        BatchReport {
            complete,
            started_at: stamp(self.started),
            finished_at: complete.then(|| stamp(chrono::Utc::now())),
            pending,
            settings_sha256: self.settings.to_string(),
            jobs: self.jobs,
            ok: count("ok"),
            skipped: count("skipped"),
            failed: count("failed"),
            cancelled: count("cancelled"),
            frames: files.iter().map(|f| f.frames).sum(),
            wall_s: (self.t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            files,
            ignored: self.ignored.to_vec(),
        }
    }
}

/// Runs the batch; `on_done` is called after each file (for progress). While it runs, a
/// partial report goes to `partial_report`'s path at most once per its interval (the CLI:
/// `OUT/report.json`, [`PARTIAL_REPORT_EVERY`]); the caller writes the complete one it returns.
pub fn run(
    inputs: &Inputs,
    cfg: &Config,
    jobs: usize,
    resume: bool,
    ctl: &Control,
    on_done: &(dyn Fn(&FileReport, usize) + Sync),
    partial_report: Option<(&Path, std::time::Duration)>,
) -> BatchReport {
    let items = &inputs.items;
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
    let frame = ReportFrame {
        started,
        t0,
        settings: &settings,
        jobs,
        ignored: &inputs.ignored,
    };
    // Held while a partial report is taken and written, so that one writer at a time writes
    // (an older snapshot never replaces a newer one); the results lock is held only for
    // the snapshot, not for the file's serialising, fsync and rename.
    let last_partial = Mutex::new(std::time::Instant::now());
    let store_and_report = |i: usize, r: FileReport| {
        let due = partial_report.and_then(|(path, every)| {
            let last = last_partial.try_lock().ok()?;
            (last.elapsed() >= every).then_some((path, last))
        });
        let Ok(mut v) = results.lock() else { return };
        v[i] = Some(r);
        let Some((path, mut last)) = due else { return };
        let files: Vec<FileReport> = v.iter().flatten().cloned().collect();
        drop(v);
        *last = std::time::Instant::now();
        let pending = items.len() - files.len();
        let json = serde_json::to_vec_pretty(&frame.report(files, pending, false));
        if let Ok(json) = json
            && let Err(e) = crate::fsutil::write_atomic(path, &json)
        {
            // The report is a record, not an output: the batch goes on.
            tracing::warn!(path = %path.display(), error = %e, "cannot write the partial report");
        }
    };
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
                    store_and_report(i, r);
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
                status: "cancelled".into(),
                class: Some("cancelled".into()),
                error: Some("not processed: the batch was interrupted".into()),
                frames: 0,
                face_tracks: 0,
                speech_s: 0.0,
                wall_s: 0.0,
            })
        })
        .collect();
    frame.report(files, 0, true)
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
            rep.status = if matches!(e, crate::pipeline::PipelineError::Cancelled { .. }) {
                "cancelled".into()
            } else {
                "failed".into()
            };
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
    fn walking_finds_media_sorted_and_lists_hidden_and_temporary_files_as_ignored() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("b/c")).unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        for f in [
            ".git/inside.mp4",
            "b/c/z.mp4",
            "a.MKV",
            ".hidden.mp4",
            "b/.obscura-tmp-1-2-x.mp4",
            "notes.txt",
            "b/y.wav",
        ] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let found = collect(d.path(), Path::new("/out")).unwrap();
        let rel: Vec<String> = found
            .items
            .iter()
            .map(|i| i.output.display().to_string())
            .collect();
        assert_eq!(rel, vec!["/out/a.mp4", "/out/b/c/z.mp4", "/out/b/y.wav"]);
        let said = |f: &str, reason: &str| Ignored {
            path: d.path().join(f).display().to_string(),
            reason: reason.into(),
        };
        assert_eq!(
            found.ignored,
            vec![
                said(".git", "hidden folder (name starts with '.'; not entered)"),
                said(
                    ".hidden.mp4",
                    "hidden file (name starts with '.'; list it to process it)"
                ),
                said(
                    "b/.obscura-tmp-1-2-x.mp4",
                    "an unfinished temporary file of an earlier run"
                ),
                said("notes.txt", "not a media file extension"),
            ]
        );
    }

    #[test]
    fn listed_files_are_mirrored_by_their_path_as_listed() {
        let cwd = Path::new("/home/op");
        for (listed, rel) in [
            ("./site-a/cam1.mp4", "site-a/cam1.mp4"),
            ("site-a/./day1/../cam1.mp4", "site-a/cam1.mp4"),
            ("/archive/site-b/cam1.mp4", "archive/site-b/cam1.mp4"),
            ("/archive/../../x.mp4", "x.mp4"),
            ("../other/x.mp4", "home/other/x.mp4"),
            ("../../../../x.mp4", "x.mp4"),
            ("/", "input"),
            ("x.wav", "x.wav"),
        ] {
            assert_eq!(
                listed_rel(Path::new(listed), cwd),
                Path::new(rel),
                "{listed}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever a list line holds, its output is a plain relative path under `--out`.
        #[test]
        fn a_listed_path_never_leads_outside_the_output_folder(
            parts in proptest::collection::vec("(\\.\\.|\\.|[a-z]{1,3}|/)", 0..12),
        ) {
            let listed = parts.concat();
            let rel = listed_rel(Path::new(&listed), Path::new("/cwd/deep"));
            proptest::prop_assert!(rel.file_name().is_some(), "{listed:?} -> {rel:?}");
            for c in rel.components() {
                proptest::prop_assert!(
                    matches!(c, std::path::Component::Normal(_)),
                    "{listed:?} -> {rel:?}"
                );
            }
        }
    }

    #[test]
    fn a_missing_input_or_an_out_that_is_a_file_is_refused_before_anything_is_made() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        assert!(matches!(
            collect(&d.path().join("typo"), &out),
            Err(CollectError::InputNotFound(_))
        ));
        std::fs::write(d.path().join("x.mp4"), b"x").unwrap();
        assert!(matches!(
            collect(d.path(), &d.path().join("x.mp4")),
            Err(CollectError::OutNotFolder(_))
        ));
        assert!(!out.exists());
    }

    #[test]
    fn a_file_listed_twice_under_two_spellings_is_done_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/x.mp4"), b"x").unwrap();
        std::fs::write(d.path().join("y.mp4"), b"x").unwrap();
        let spelled = [
            d.path().join("a/x.mp4"),
            d.path().join("y.mp4"),
            d.path().join("a/../a/./x.mp4"),
            d.path().join("missing.mp4"),
            d.path().join("missing.mp4"),
        ];
        let list = d.path().join("list.txt");
        let lines: Vec<String> = spelled.iter().map(|p| p.display().to_string()).collect();
        std::fs::write(&list, lines.join("\n")).unwrap();
        let found = collect(&list, Path::new("/out")).unwrap();
        let inputs: Vec<&Path> = found.items.iter().map(|i| i.input.as_path()).collect();
        // The missing one is kept twice: it fails with its own error, and what does not
        // exist cannot be told to be the same file.
        assert_eq!(
            inputs,
            vec![&spelled[0], &spelled[1], &spelled[3], &spelled[4]]
        );
        assert_eq!(
            found.ignored,
            vec![Ignored {
                path: lines[2].clone(),
                reason: format!("listed more than once (the same file as {})", lines[0]),
            }]
        );
    }

    #[test]
    fn raw_streams_count_as_media_and_links_are_listed_not_followed() {
        let d = tempfile::tempdir().unwrap();
        for f in ["cam.h264", "door.265", "a.HEVC"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        std::os::unix::fs::symlink(d.path().join("cam.h264"), d.path().join("link.mp4")).unwrap();
        std::os::unix::fs::symlink(d.path(), d.path().join("loop")).unwrap();
        let found = collect(d.path(), Path::new("/out")).unwrap();
        let outputs: Vec<String> = found
            .items
            .iter()
            .map(|i| i.output.display().to_string())
            .collect();
        assert_eq!(outputs, vec!["/out/a.mp4", "/out/cam.mp4", "/out/door.mp4"]);
        let ignored: Vec<&str> = found.ignored.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            ignored,
            vec![
                d.path().join("link.mp4").to_str().unwrap(),
                d.path().join("loop").to_str().unwrap()
            ]
        );
        assert!(
            found
                .ignored
                .iter()
                .all(|i| i.reason.starts_with("symbolic link"))
        );
    }

    #[test]
    fn with_follow_links_are_walked_once_loops_end_and_a_file_reached_twice_is_done_once() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir_all(tree.join("cam")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(tree.join("cam/a.mp4"), b"x").unwrap();
        std::fs::write(elsewhere.join("b.mp4"), b"x").unwrap();
        let link = |to: &Path, at: &str| std::os::unix::fs::symlink(to, tree.join(at)).unwrap();
        link(&elsewhere, "nas");
        link(&elsewhere, "nas-again");
        link(&tree, "cam/loop");
        link(&tree.join("cam/a.mp4"), "latest.mp4");
        link(&d.path().join("gone.mp4"), "broken.mp4");
        let found = collect_with(&tree, Path::new("/out"), true).unwrap();
        let outputs: Vec<String> = found
            .items
            .iter()
            .map(|i| i.output.display().to_string())
            .collect();
        assert_eq!(outputs, vec!["/out/cam/a.mp4", "/out/nas/b.mp4"]);
        let why: Vec<(String, &str)> = found
            .ignored
            .iter()
            .map(|i| {
                let rel = Path::new(&i.path).strip_prefix(&tree).unwrap();
                (
                    rel.display().to_string(),
                    i.reason.split(" (").next().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            why,
            vec![
                ("broken.mp4".to_string(), "broken symbolic link"),
                ("cam/loop".to_string(), "a folder already walked"),
                ("latest.mp4".to_string(), "reached more than once"),
                ("nas-again".to_string(), "a folder already walked"),
            ]
        );
        // Without --follow the same tree gives the real file only.
        let plain = collect(&tree, Path::new("/out")).unwrap();
        assert_eq!(plain.items.len(), 1);
        assert_eq!(plain.ignored.len(), 5);
    }

    #[test]
    fn an_output_folder_inside_the_input_is_not_walked_and_the_input_itself_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("redacted/sub")).unwrap();
        std::fs::write(d.path().join("cam.mp4"), b"x").unwrap();
        std::fs::write(d.path().join("redacted/cam.mp4"), b"x").unwrap();
        std::fs::write(d.path().join("redacted/sub/cam.mp4"), b"x").unwrap();
        // Named with a detour: the comparison is of the folders, not of their spelling.
        let out = d.path().join("redacted/sub/..");
        let found = collect(d.path(), &out).unwrap();
        let inputs: Vec<&Path> = found.items.iter().map(|i| i.input.as_path()).collect();
        assert_eq!(inputs, vec![d.path().join("cam.mp4")]);
        assert!(found.ignored.is_empty(), "{:?}", found.ignored);
        let same = d.path().join("redacted/..");
        assert!(matches!(
            collect(d.path(), &same),
            Err(CollectError::OutIsInput(_))
        ));
    }
}
