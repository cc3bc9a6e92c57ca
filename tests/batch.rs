//! `obscura batch` through the real binary: a tree with good and bad files, the mirrored
//! outputs and report, and a batch killed with SIGKILL and resumed, which must end with exactly
//! the outputs of an uninterrupted run.

mod common;

use std::path::Path;

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("site-a/day1")).unwrap();
    std::fs::create_dir_all(dir.join("site-b")).unwrap();
    std::fs::copy(
        common::sample("city_pan.mp4"),
        dir.join("site-a/day1/cam1.mp4"),
    )
    .unwrap();
    std::fs::copy(common::sample("city_pan.mp4"), dir.join("site-b/door.mkv")).unwrap();
    std::fs::copy(
        common::sample("audio/speech_en-us_fast_200wpm_pauses.wav"),
        dir.join("site-b/intercom.wav"),
    )
    .unwrap();
    std::fs::write(dir.join("site-a/broken.mp4"), b"not a video at all").unwrap();
    std::fs::write(dir.join("site-a/empty.mp4"), b"").unwrap();
}

fn config(dir: &Path) -> std::path::PathBuf {
    // One x264 thread: outputs are then byte-for-byte reproducible (compared below).
    let p = dir.join("batch.toml");
    std::fs::write(&p, "[encode]\nthreads = 1\n").unwrap();
    p
}

/// `obscura batch INPUT --out OUT --config CFG --jobs JOBS`.
fn batch_cmd(input: &Path, out: &Path, cfg: &Path, jobs: usize) -> std::process::Command {
    let mut c = common::bin();
    c.args(["batch", input.to_str().unwrap(), "--out"])
        .arg(out)
        .arg("--config")
        .arg(cfg)
        .args(["--jobs", &jobs.to_string()]);
    c
}

/// One file at a time, `extra` flags added, run to its end.
fn batch(input: &Path, out: &Path, cfg: &Path, extra: &[&str]) -> std::process::Output {
    batch_cmd(input, out, cfg, 1).args(extra).output().unwrap()
}

/// The content of each output: decoded pictures for videos (mp4mux stamps the creation time
/// into the file, so bytes differ between runs), the bytes of the WAV.
fn outputs(out: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for rel in [
        "site-a/day1/cam1.mp4",
        "site-b/door.mp4",
        "site-b/intercom.wav",
    ] {
        let p = out.join(rel);
        let fp = if !p.exists() {
            "missing".to_string()
        } else if rel.ends_with(".mp4") {
            obscura::eval::luma_hashes(&p)
                .map(|h| obscura::fsutil::sha256_bytes(h.join(",").as_bytes()))
                .unwrap_or_else(|e| e.to_string())
        } else {
            obscura::fsutil::sha256_file(&p).unwrap()
        };
        v.push((rel.to_string(), fp));
    }
    v
}

#[test]
fn a_mixed_tree_is_mirrored_bad_files_are_listed_and_the_batch_fails_at_the_end() {
    let dir = common::scratch();
    let input = dir.path().join("in");
    tree(&input);
    let out = dir.path().join("out");
    let o = batch(&input, &out, &config(dir.path()), &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (r["ok"].as_u64(), r["failed"].as_u64()),
        (Some(3), Some(2)),
        "{r}"
    );
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(on_disk["files"].as_array().unwrap().len(), 5);
    let broken = on_disk["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["input"].as_str().unwrap().ends_with("broken.mp4"))
        .unwrap();
    assert_eq!(broken["status"], "failed");
    assert_eq!(broken["class"], "not_media");
    let empty = on_disk["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["input"].as_str().unwrap().ends_with("empty.mp4"))
        .unwrap();
    assert_eq!(empty["class"], "empty");
    for (rel, sha) in outputs(&out) {
        assert_ne!(sha, "missing", "{rel}");
        let mut sc = out.join(&rel).into_os_string();
        sc.push(".json");
        assert!(Path::new(&sc).is_file(), "sidecar of {rel}");
    }
    let cam = on_disk["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["input"].as_str().unwrap().ends_with("cam1.mp4"))
        .unwrap();
    assert_eq!(cam["frames"], 169);
    assert!(cam["face_tracks"].as_u64().unwrap() > 0);
    let intercom = on_disk["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["input"].as_str().unwrap().ends_with("intercom.wav"))
        .unwrap();
    assert!(intercom["speech_s"].as_f64().unwrap() > 3.0);
    assert!(!out.join("site-a/broken.mp4").exists() && !out.join("site-a/empty.mp4").exists());
}

#[test]
fn a_batch_killed_at_any_point_and_resumed_ends_with_the_outputs_of_an_uninterrupted_run() {
    let dir = common::scratch();
    let input = dir.path().join("in");
    tree(&input);
    for f in ["site-a/broken.mp4", "site-a/empty.mp4"] {
        std::fs::remove_file(input.join(f)).unwrap();
    }
    let cfg = config(dir.path());
    let reference = dir.path().join("ref");
    assert_eq!(batch(&input, &reference, &cfg, &[]).status.code(), Some(0));
    let want = outputs(&reference);

    for (k, delay_ms) in [150u64, 900, 1700].into_iter().enumerate() {
        let out = dir.path().join(format!("out{k}"));
        let mut child = batch_cmd(&input, &out, &cfg, 1)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // No partial file is ever visible under its final name.
        for (rel, _) in outputs(&out) {
            let p = out.join(&rel);
            if p.exists() {
                let mut sc = p.clone().into_os_string();
                sc.push(".json");
                // An output may exist without its sidecar (killed in between): resume redoes it.
                assert!(
                    obscura::media::probe(&p, std::time::Duration::from_secs(10)).is_ok(),
                    "{rel} is playable"
                );
            }
        }
        let o = batch(&input, &out, &cfg, &["--resume"]);
        assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
        assert_eq!(outputs(&out), want, "kill after {delay_ms} ms");
        // Resuming again does nothing.
        let o = batch(&input, &out, &cfg, &["--resume", "--json"]);
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["skipped"], 3, "{r}");
    }
}

/// The content of every output under `out` (mp4: decoded pictures; audio: bytes), keyed by
/// path; report.json and sidecars left out.
fn all_outputs(out: &Path) -> Vec<(String, String)> {
    common::files_under(out)
        .into_iter()
        .filter(|r| !r.ends_with(".json"))
        .map(|r| {
            let p = out.join(&r);
            let fp = if r.ends_with(".mp4") {
                obscura::eval::luma_hashes(&p)
                    .map(|h| obscura::fsutil::sha256_bytes(h.join(",").as_bytes()))
                    .unwrap_or_else(|e| e.to_string())
            } else {
                obscura::fsutil::sha256_file(&p).unwrap()
            };
            (r, fp)
        })
        .collect()
}

/// Files in parallel share the process's pooled ONNX Runtime sessions (several in use at once,
/// then lent again to later files): the pictures and the report's findings must be exactly
/// those of one file at a time.
#[test]
fn files_in_parallel_redact_exactly_as_one_at_a_time() {
    let dir = common::scratch();
    let input = dir.path().join("in");
    tree(&input);
    // Two more copies, so that sessions are given back and lent again while others run.
    std::fs::copy(
        common::sample("city_pan.mp4"),
        input.join("site-a/day1/cam2.mp4"),
    )
    .unwrap();
    std::fs::copy(
        common::sample("audio/speech_en-us_fast_200wpm_pauses.wav"),
        input.join("site-a/intercom2.wav"),
    )
    .unwrap();
    let cfg = config(dir.path());
    let serial = dir.path().join("serial");
    assert_eq!(batch(&input, &serial, &cfg, &[]).status.code(), Some(1));
    let parallel = dir.path().join("parallel");
    let o = batch_cmd(&input, &parallel, &cfg, 3)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let want = all_outputs(&serial);
    assert_eq!(want.len(), 5, "{want:?}");
    assert_eq!(all_outputs(&parallel), want);
    let findings = |out: &Path| -> Vec<(String, String, String, String)> {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        let mut v: Vec<_> = r["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let rel = f["input"].as_str().unwrap().rsplit("/in/").next().unwrap();
                (
                    rel.to_string(),
                    f["status"].to_string(),
                    f["face_tracks"].to_string(),
                    f["speech_s"].to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(findings(&parallel), findings(&serial));
}

/// Ctrl-C (SIGINT) stopped only the batch's next files: the file in progress ran on to its
/// end (an hour-long recording kept an interrupted batch going for up to an hour). Now the
/// files in progress stop too, leave nothing behind, and the report lists every file not
/// finished as cancelled (exit 130; `--resume` redoes them). They were also counted as
/// `failed` (an interrupted batch of six said "6 failed"); now `cancelled` has its own status
/// and count.
#[test]
fn regression_an_interrupted_batch_finished_the_file_in_progress() {
    let dir = common::scratch();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for name in ["a.mp4", "b.mp4"] {
        std::fs::copy(common::sample("faces_sizes.mp4"), input.join(name)).unwrap();
    }
    let out = dir.path().join("out");
    let cfg = config(dir.path());
    let child = batch_cmd(&input, &out, &cfg, 1)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first file's temporary output exists: its pipeline is running.
    let running = (0..3000).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        common::files_under(&out)
            .iter()
            .any(|r| r.contains(obscura::fsutil::TEMP_PREFIX))
    });
    assert!(running, "the first file never started");
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let status_and_class: Vec<(&str, &str)> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["status"].as_str().unwrap_or("none"),
                f["class"].as_str().unwrap_or("none"),
            )
        })
        .collect();
    assert_eq!(
        status_and_class,
        [("cancelled", "cancelled"), ("cancelled", "cancelled")],
        "{r}"
    );
    // An interrupt is not the files' fault: they are counted apart from failures.
    assert_eq!(
        (r["failed"].as_u64(), r["cancelled"].as_u64()),
        (Some(0), Some(2)),
        "{r}"
    );
    assert_eq!(
        common::files_under(&out),
        ["report.json"],
        "the file in progress was finished or left something behind"
    );
}

/// Suite 4 of RELIABILITY.md: the batch above killed at `OBSCURA_KILLS` (default 10) random
/// points (seed `OBSCURA_KILL_SEED`) over small inputs of four formats in two folders. After
/// each kill every visible output is complete (plays; its sidecar, if there, has its sha256);
/// after `--resume` the outputs equal an uninterrupted run's, each file is done exactly once,
/// and nothing temporary is left.
#[test]
fn a_batch_killed_at_random_points_and_resumed_loses_and_duplicates_nothing() {
    let kills = common::env_num("OBSCURA_KILLS", 10);
    let mut rng = common::Rng(common::env_num("OBSCURA_KILL_SEED", 11));
    let dir = common::scratch();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    let seeds = common::repo().join("tests/corpus/seeds");
    for (from, to) in [
        ("clip.mp4", "clip.mp4"),
        ("clip.mkv", "sub/clip.mkv"),
        ("speech.wav", "speech.wav"),
        ("speech.flac", "sub/speech.flac"),
    ] {
        std::fs::copy(seeds.join(from), input.join(to)).unwrap();
    }
    let cfg = config(dir.path());
    let reference = dir.path().join("ref");
    let t = std::time::Instant::now();
    assert_eq!(batch(&input, &reference, &cfg, &[]).status.code(), Some(0));
    let mut plan = common::KillPlan::new(t.elapsed(), kills);
    let want = all_outputs(&reference);
    assert_eq!(want.len(), 4, "{want:?}");

    while plan.more() {
        let k = plan.attempts;
        let out = dir.path().join(format!("out{k}"));
        let at = plan.next_at(&mut rng);
        let mut c = batch_cmd(&input, &out, &cfg, 1);
        let start = std::time::Instant::now();
        let ended = common::run_until(&mut c, start, at).map(|_| start.elapsed());
        plan.record(ended);
        for rel in common::files_under(&out) {
            let p = out.join(&rel);
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with(obscura::fsutil::TEMP_PREFIX) || rel.ends_with(".json") {
                continue;
            }
            assert!(
                obscura::media::probe(&p, std::time::Duration::from_secs(10)).is_ok(),
                "kill {k} at {at:?}: {rel} is visible but does not play"
            );
            let sc = out.join(format!("{rel}.json"));
            if sc.exists() {
                let s: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&sc).unwrap()).unwrap();
                assert_eq!(
                    s["output"]["sha256"].as_str().unwrap(),
                    obscura::fsutil::sha256_file(&p).unwrap(),
                    "kill {k}: the sidecar of {rel} describes another file"
                );
            }
        }
        let o = batch(&input, &out, &cfg, &["--resume", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            r["ok"].as_u64().unwrap() + r["skipped"].as_u64().unwrap(),
            4,
            "{r}"
        );
        assert_eq!(all_outputs(&out), want, "kill {k} at {at:?}");
        let left: Vec<String> = common::files_under(&out)
            .into_iter()
            .filter(|r| r.contains(obscura::fsutil::TEMP_PREFIX))
            .collect();
        assert!(left.is_empty(), "kill {k} at {at:?}: left {left:?}");
        let _ = std::fs::remove_dir_all(&out);
    }
    plan.finish("batch");
}

/// Issue 6 (found in a user's walk-through): `--out` inside the input tree made every resumed
/// run redact the previous run's outputs again (`OUT/OUT/x.mp4`, then `OUT/OUT/OUT/…`), and
/// `--out` naming the input folder failed every file one by one. Files the walk passes over
/// were not mentioned anywhere; now the report lists them.
#[test]
fn regression_issue_6_an_output_folder_inside_the_input_is_not_redacted_again() {
    let dir = common::scratch();
    let input = dir.path().join("archive");
    std::fs::create_dir_all(input.join("cam")).unwrap();
    std::fs::copy(common::sample("city_pan.mp4"), input.join("cam/door.mp4")).unwrap();
    std::fs::write(input.join("cam/door.jpg"), b"a thumbnail").unwrap();
    let cfg = config(dir.path());
    let out = input.join("redacted");
    for extra in [&["--json"][..], &["--json", "--resume"][..]] {
        let o = batch(&input, &out, &cfg, extra);
        assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    }
    let o = batch(&input, &out, &cfg, &["--json", "--resume"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (r["ok"].as_u64(), r["skipped"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    assert_eq!(r["files"].as_array().unwrap().len(), 1, "{r}");
    let ignored = r["ignored"].as_array().unwrap();
    assert_eq!(ignored.len(), 1, "{r}");
    assert!(
        ignored[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("cam/door.jpg")
    );
    assert_eq!(ignored[0]["reason"], "not a media file extension");
    assert_eq!(
        common::files_under(&out),
        vec!["cam/door.mp4", "cam/door.mp4.json", "report.json"]
    );

    // The input folder itself as `--out`: a usage error before anything is written.
    let before = common::files_under(&input);
    let o = batch(&input, &input.join("cam/.."), &cfg, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("is the input folder itself"));
    assert_eq!(common::files_under(&input), before);
}

/// A folder with nothing to process is not an error (a day's folder may be empty), but it is
/// said: a mistyped path looks the same.
#[test]
fn a_folder_without_media_says_so_and_lists_what_it_passed_over() {
    let dir = common::scratch();
    let input = dir.path().join("day");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("index.html"), b"<html>").unwrap();
    std::fs::write(input.join("._clip.mp4"), b"macOS resource fork").unwrap();
    let out = dir.path().join("out");
    let o = batch(&input, &out, &config(dir.path()), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    assert!(
        common::stderr(&o).contains("no media files to process"),
        "{}",
        common::stderr(&o)
    );
    assert!(
        common::stderr(&o).contains("(1 hidden file, 1 not a media file extension)"),
        "{}",
        common::stderr(&o)
    );
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(r["files"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(
        r["ignored"][1]["reason"], "not a media file extension",
        "{r}"
    );
}

/// A list naming one file twice (relative and absolute, as lists put together from two
/// sources do) redacted it twice, into `x.mp4` and `x-1.mp4`. Now once; the second line is
/// listed as ignored.
#[test]
fn regression_issue_6_a_file_listed_twice_is_redacted_once() {
    let dir = common::scratch();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(input.join("b")).unwrap();
    std::fs::copy(common::sample("city_pan.mp4"), input.join("door.mp4")).unwrap();
    std::fs::copy(common::sample("city_pan.mp4"), input.join("b/door.mp4")).unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(
        &list,
        format!(
            "# two sources\nin/door.mp4\n\n{}\n./in/b/door.mp4\n",
            input.join("door.mp4").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = common::bin()
        .current_dir(dir.path())
        .args(["batch", "list.txt", "--out", "out", "--json", "--config"])
        .arg(config(dir.path()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["ok"], 2, "{r}");
    assert_eq!(
        r["ignored"][0]["reason"], "listed more than once (the same file as in/door.mp4)",
        "{r}"
    );
    // Listed files are mirrored by their path as listed, so two `door.mp4` of different
    // folders keep apart (they were written flat, as `door.mp4` and `door-1.mp4`).
    assert_eq!(
        common::files_under(&out),
        vec![
            "in/b/door.mp4",
            "in/b/door.mp4.json",
            "in/door.mp4",
            "in/door.mp4.json",
            "report.json"
        ]
    );
}

/// `--jsonl`: JSON lines on stdout as the batch goes, nothing else there — a `begin` record,
/// one `file` record per file as it finishes, and a `summary` that agrees with report.json.
#[test]
fn json_lines_say_begin_each_file_and_summary() {
    let dir = common::scratch();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(common::sample("city_pan.mp4"), input.join("door.mp4")).unwrap();
    std::fs::write(input.join("broken.mp4"), b"not a video at all").unwrap();
    let out = dir.path().join("out");
    let o = batch(&input, &out, &config(dir.path()), &["--jsonl"]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a line that is not JSON"))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["begin", "file", "file", "summary"]);
    assert_eq!(lines[0]["files"], 2);
    let mut status: Vec<(String, &str)> = lines[1..3]
        .iter()
        .map(|l| {
            let name = l["input"].as_str().unwrap().rsplit('/').next().unwrap();
            (name.to_string(), l["status"].as_str().unwrap())
        })
        .collect();
    status.sort();
    assert_eq!(
        status,
        [("broken.mp4".into(), "failed"), ("door.mp4".into(), "ok")]
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    for key in ["ok", "failed", "skipped", "cancelled", "frames"] {
        assert_eq!(lines[3][key], report[key], "{key}");
    }
    assert_eq!(
        (lines[3]["ok"].as_u64(), lines[3]["failed"].as_u64()),
        (Some(1), Some(1))
    );
}

/// report.json was written only at the end: a long batch killed hard (SIGKILL, power) left no
/// record of what it had done until resumed. Now the running batch rewrites it (atomically)
/// with the files finished so far, marked incomplete; here with no interval, so after every
/// file. Each file's callback (before its own record goes in) finds the earlier ones there,
/// each with its output committed.
#[test]
fn regression_issue_6_a_running_batch_keeps_a_partial_report() {
    let dir = common::scratch();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let seeds = common::repo().join("tests/corpus/seeds");
    for name in ["a.mp4", "b.mp4", "c.mp4"] {
        std::fs::copy(seeds.join("clip.mp4"), input.join(name)).unwrap();
    }
    let out = dir.path().join("out");
    let report_path = out.join("report.json");
    let inputs = obscura::batch::collect(&input, &out).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let on_done = |_: &obscura::batch::FileReport, n: usize| {
        let on_disk: Option<serde_json::Value> = std::fs::read(&report_path)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap());
        seen.lock().unwrap().push((n, on_disk));
    };
    let ctl = obscura::pipeline::Control::default();
    let report = obscura::batch::run(
        &inputs,
        &common::config(),
        1,
        false,
        &ctl,
        &on_done,
        Some((&report_path, std::time::Duration::ZERO)),
    );
    assert_eq!(report.ok, 3);
    assert!(report.complete && report.finished_at.is_some());
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen[0].1.is_none(), "a report before any file finished");
    for (n, on_disk) in &seen[1..] {
        let r = on_disk.as_ref().expect("no partial report");
        assert_eq!(r["complete"], false, "{r}");
        assert!(r["finished_at"].is_null(), "{r}");
        assert_eq!(r["pending"], 3 - (n - 1), "{r}");
        let files = r["files"].as_array().unwrap();
        assert_eq!(files.len(), n - 1, "{r}");
        for f in files {
            assert_eq!(f["status"], "ok", "{r}");
            assert!(Path::new(f["output"].as_str().unwrap()).is_file(), "{r}");
        }
    }
}
