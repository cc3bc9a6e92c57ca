//! The privacy promises of issue #24, end to end through the real binary on local folder
//! stores: holds are records per case (a release ends one case only; device and account
//! holds cover clips ingested later; erase and sweep refuse held clips), unknown ids are
//! errors that change nothing, `ingest --device` is only the camera, recording times are
//! bounded, `retention sweep --dry-run` lists what the sweep removes, classification fails
//! closed, unredacted media goes only where a region accepts it, and keys, quarantine copies,
//! exports and the audit log are the owner's only.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Regions: `eu` (vault + key store), `us` (store only), `lab` (accepts unredacted media).
fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let d = dir.display();
    let text = format!(
        r#"
[regions.eu]
store = "file://{d}/eu"
vault = "file://{d}/eu-vault"
[regions.us]
store = "file://{d}/us"
[regions.lab]
store = "file://{d}/lab"
accept_unredacted = true

[devices]
"cam-eu-1" = {{ region = "eu", account = "acct-7", minor = false }}
"cam-eu-2" = {{ region = "eu", account = "acct-7", minor = false }}
"cam-us-1" = {{ region = "us", account = "acct-8", minor = false }}
"cam-lab-1" = {{ region = "lab", account = "acct-9", minor = false }}
"cam-lab-2" = {{ region = "lab", account = "acct-9", minor = false }}
"cam-lab-3" = {{ region = "lab", account = "acct-9", minor = false }}
"cam-lab-4" = {{ region = "lab", account = "acct-9", minor = false }}
"cam-lab-5" = {{ region = "lab", account = "acct-9", minor = false }}
"cam-lab-6" = {{ region = "lab", account = "acct-9", minor = false }}

[retention]
personal = "30d"
non_personal = "365d"
originals = "7d"

[paths]
quarantine = "{d}/quarantine"
audit = "{d}/audit.jsonl"
work = "{d}/work"
{extra}
"#
    );
    let p = dir.join("obscura.toml");
    std::fs::write(&p, text).unwrap();
    p
}

struct Run {
    code: i32,
    json: Value,
    stdout: String,
    stderr: String,
}

fn obscura(cfg: &Path, args: &[&str], now: Option<&str>) -> Run {
    let mut c = common::bin();
    c.args(args).arg("--config").arg(cfg).env("USER", "tester");
    if let Some(n) = now {
        c.env("OBSCURA_NOW", n);
    }
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        json: serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
        stdout: String::from_utf8_lossy(&o.stdout).to_string(),
        stderr: common::stderr(&o),
    }
}

fn ingest(cfg: &Path, input: &Path, device: &str, extra: &[&str]) -> Run {
    let mut args = vec!["ingest", input.to_str().unwrap(), "--device", device];
    args.extend_from_slice(extra);
    obscura(cfg, &args, None)
}

/// The tone ingested from cam-eu-1 and from cam-eu-2 (both acct-7): their clip ids.
fn two_clips(cfg: &Path) -> (String, String) {
    let id = |device: &str| {
        let r = ingest(cfg, &common::sample(TONE), device, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json["clip"].as_str().unwrap().to_string()
    };
    (id("cam-eu-1"), id("cam-eu-2"))
}

fn sidecar(dir: &Path, region: &str, clip: &str) -> Value {
    let p = dir
        .join(region)
        .join("clips")
        .join(clip)
        .join("sidecar.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn cases(v: &Value) -> Vec<String> {
    let mut c: Vec<String> = v
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|h| h["case"].as_str().unwrap().to_string())
        .collect();
    c.sort();
    c
}

fn audit_actions(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Every file under `dir` with its contents: what "nothing changed" is checked against.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    common::files_under(dir)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(dir.join(&f)).unwrap();
            (f, b)
        })
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

const TONE: &str = "audio/tone_440hz_2s_16k.wav";
const SPEECH: &str = "audio/sense_and_sensibility_01_austen_64kb-0880.wav";

#[test]
fn two_cases_hold_a_clip_until_both_are_released() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let r = ingest(
        &cfg,
        &common::sample(TONE),
        "cam-eu-1",
        &["--recorded-at", "2026-01-01T00:00:00Z"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let clip = r.json["clip"].as_str().unwrap().to_string();

    for (case, reason) in [("case us-7", "subpoena 7"), ("case us-8", "subpoena 8")] {
        let r = obscura(
            &cfg,
            &[
                "hold", "set", "--clip", &clip, "--case", case, "--reason", reason, "--by", "alice",
            ],
            None,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json["clips"][0], clip.as_str());
    }
    let l = obscura(&cfg, &["hold", "list", "--clip", &clip, "--json"], None);
    assert_eq!(l.code, 0, "{}", l.stderr);
    assert_eq!(cases(&l.json), ["case us-7", "case us-8"], "{}", l.stdout);
    assert!(
        l.json
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["by"] == "alice" && h["scope"]["kind"] == "clip" && h["set_at"].is_string())
    );
    let table = obscura(&cfg, &["hold", "list"], None);
    assert!(
        table.stdout.contains("case us-7") && table.stdout.contains("subpoena 8"),
        "{}",
        table.stdout
    );
    let s = sidecar(d, "eu", &clip);
    assert_eq!(s["clip"]["hold"], true);
    assert_eq!(cases(&s["clip"]["holds"]), ["case us-7", "case us-8"]);

    // Releasing one case leaves the other in force.
    let r = obscura(
        &cfg,
        &[
            "hold",
            "release",
            "--case",
            "case us-7",
            "--reason",
            "case us-7 closed",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["still_held"][0], clip.as_str());
    let l = obscura(&cfg, &["hold", "list", "--json"], None);
    assert_eq!(cases(&l.json), ["case us-8"]);
    let s = sidecar(d, "eu", &clip);
    assert_eq!(s["clip"]["hold"], true);
    assert_eq!(cases(&s["clip"]["holds"]), ["case us-8"]);

    // Erase and sweep refuse the clip, naming the case; nothing is deleted.
    let before = common::files_under(d);
    let e = obscura(&cfg, &["erase", "--clip", &clip], None);
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert_eq!(e.json["held"][0], clip.as_str());
    assert_eq!(e.json["held_by"][&clip][0], "case us-8");
    assert!(e.json["erased"].as_array().unwrap().is_empty());
    let later = "2028-01-01T00:00:00Z";
    let sw = obscura(&cfg, &["retention", "sweep"], Some(later));
    assert_eq!(sw.code, 0, "{}", sw.stderr);
    assert_eq!(sw.json["held"][0], clip.as_str());
    assert!(sw.json["removed"].as_array().unwrap().is_empty());
    // Nothing changed but the audit trail: the log, its head and the head anchored in each
    // region's store by the sweep.
    let not_audit = |f: &String| {
        f != "audit.jsonl" && f != "audit.jsonl.head" && !f.ends_with("/audit/head.json")
    };
    let after: Vec<String> = common::files_under(d)
        .into_iter()
        .filter(not_audit)
        .collect();
    assert_eq!(
        after,
        before.into_iter().filter(not_audit).collect::<Vec<_>>()
    );

    // The export shows the hold in force.
    let out = d.join("export");
    let x = obscura(
        &cfg,
        &[
            "export",
            "--account",
            "acct-7",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(cases(&x.json["holds"]), ["case us-8"]);
    let rec: Value =
        serde_json::from_slice(&std::fs::read(out.join(&clip).join("sidecar.json")).unwrap())
            .unwrap();
    assert_eq!(cases(&rec["clip"]["holds"]), ["case us-8"]);

    // A case that is not in force: an error, nothing changed.
    let r = obscura(&cfg, &["hold", "release", "--case", "case us-7"], None);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("case us-7") && r.stderr.contains("case us-8"),
        "{}",
        r.stderr
    );

    // With the last case released, the sweep deletes the clip.
    let r = obscura(&cfg, &["hold", "release", "--case", "case us-8"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(sidecar(d, "eu", &clip)["clip"]["hold"], false);
    let sw = obscura(&cfg, &["retention", "sweep"], Some(later));
    assert_eq!(sw.json["deleted"][0], clip.as_str(), "{}", sw.stdout);
    assert!(!d.join("eu/clips").join(&clip).join("sidecar.json").exists());

    // Every hold change is in the audit log, which verifies.
    let actions = audit_actions(d);
    assert_eq!(actions.iter().filter(|a| *a == "hold_set").count(), 2);
    assert_eq!(actions.iter().filter(|a| *a == "hold_release").count(), 2);
    let log = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
    assert!(
        log.contains("alice") && log.contains("case us-7 closed"),
        "{log}"
    );
    assert_eq!(obscura(&cfg, &["audit", "verify"], None).code, 0);
}

#[test]
fn a_device_hold_covers_a_clip_ingested_after_it() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    // No clip of cam-eu-2 exists yet: the hold is still set (the device is configured).
    let r = obscura(
        &cfg,
        &[
            "hold", "set", "--device", "cam-eu-2", "--case", "case 9", "--reason", "incident",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.json["clips"].as_array().unwrap().is_empty());
    // An account hold limited to a window that this clip is not in.
    let r = obscura(
        &cfg,
        &[
            "hold",
            "set",
            "--account",
            "acct-7",
            "--case",
            "case 10",
            "--reason",
            "window",
            "--from",
            "2025-01-01T00:00:00Z",
            "--to",
            "2025-02-01T00:00:00Z",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = ingest(
        &cfg,
        &common::sample(TONE),
        "cam-eu-2",
        &["--recorded-at", "2026-01-01T00:00:00Z"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let clip = r.json["clip"].as_str().unwrap().to_string();
    let s = sidecar(d, "eu", &clip);
    assert_eq!(s["clip"]["hold"], true);
    assert_eq!(
        cases(&s["clip"]["holds"]),
        ["case 9"],
        "the window excludes case 10"
    );

    let e = obscura(&cfg, &["erase", "--device", "cam-eu-2"], None);
    assert_eq!(e.json["held"][0], clip.as_str(), "{}", e.stdout);
    let sw = obscura(&cfg, &["retention", "sweep"], Some("2028-01-01T00:00:00Z"));
    assert_eq!(sw.json["held"][0], clip.as_str(), "{}", sw.stdout);
    assert!(d.join("eu/clips").join(&clip).join("sidecar.json").exists());
    let l = obscura(
        &cfg,
        &["hold", "list", "--account", "acct-7", "--json"],
        None,
    );
    assert_eq!(cases(&l.json), ["case 10", "case 9"], "{}", l.stdout);

    // Released: the next erase goes through.
    assert_eq!(
        obscura(&cfg, &["hold", "release", "--case", "case 9"], None).code,
        0
    );
    let e = obscura(&cfg, &["erase", "--device", "cam-eu-2"], None);
    assert_eq!(e.json["erased"][0], clip.as_str(), "{}", e.stdout);
}

#[test]
fn unknown_ids_exit_non_zero_and_change_nothing() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let r = ingest(&cfg, &common::sample(TONE), "cam-us-1", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let unknown_clip = "0".repeat(64);
    let out = d.join("export-typo");
    let calls: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "hold", "set", "--device", "cam-nope", "--case", "c", "--reason", "r",
            ],
            "cam-nope",
        ),
        (
            vec![
                "hold",
                "set",
                "--account",
                "acct-nope",
                "--case",
                "c",
                "--reason",
                "r",
            ],
            "acct-nope",
        ),
        (
            vec![
                "hold",
                "set",
                "--clip",
                &unknown_clip,
                "--case",
                "c",
                "--reason",
                "r",
            ],
            &unknown_clip,
        ),
        (vec!["hold", "list", "--device", "cam-nope"], "cam-nope"),
        (
            vec!["hold", "release", "--case", "c", "--device", "cam-nope"],
            "cam-nope",
        ),
        (vec!["erase", "--device", "cam-typo"], "cam-typo"),
        (vec!["erase", "--account", "acct-typo"], "acct-typo"),
        (vec!["erase", "--clip", &unknown_clip], &unknown_clip),
        (
            vec![
                "export",
                "--account",
                "acct-typo",
                "--out",
                out.to_str().unwrap(),
            ],
            "acct-typo",
        ),
    ];
    for (args, id) in calls {
        let before = snapshot(d);
        let r = obscura(&cfg, &args, None);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(id), "{args:?} names the id: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        if !args.contains(&"--clip") {
            assert!(
                r.stderr.contains("known")
                    && (r.stderr.contains("cam-us-1") || r.stderr.contains("acct-8")),
                "{args:?} says what is known: {}",
                r.stderr
            );
        }
        assert!(snapshot(d) == before, "{args:?} changed something");
        assert!(!out.exists());
    }
}

#[test]
fn ingest_device_is_the_camera_and_compute_has_its_own_flag() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let tone = common::sample(TONE);
    for extra in [&["--device", "cpu"][..], &[]] {
        let device = if extra.is_empty() { "cpu" } else { "cam-us-1" };
        let r = ingest(&cfg, &tone, device, extra);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(r.stderr.contains("--compute"), "{}", r.stderr);
    }
    assert!(
        common::files_under(d).iter().all(|f| f == "obscura.toml"),
        "{:?}",
        common::files_under(d)
    );
    let r = ingest(&cfg, &tone, "cam-us-1", &["--compute", "cpu"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["region"], "us");
}

#[test]
fn recorded_at_is_bounded_and_the_error_names_the_formats() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let tone = common::sample(TONE);
    let now = "2026-06-01T00:00:00Z";
    let at = |t: &str| {
        obscura(
            &cfg,
            &[
                "ingest",
                tone.to_str().unwrap(),
                "--device",
                "cam-us-1",
                "--recorded-at",
                t,
            ],
            Some(now),
        )
    };
    for (t, says) in [
        ("2030-01-01T00:00:00Z", "future"),
        ("2026-06-01T00:06:00Z", "future"),
        ("1999-12-31T23:59:59Z", "2000-01-01"),
        ("2026-01-01", "RFC 3339"),
    ] {
        let r = at(t);
        assert_eq!(r.code, 2, "{t}: {}", r.stderr);
        assert!(
            r.stderr.contains(says) && r.stderr.contains("RFC 3339"),
            "{t}: {}",
            r.stderr
        );
    }
    assert!(!d.join("us").join("clips").exists(), "nothing stored");
    // Within the skew, and the compact form of file names.
    let r = at("2026-06-01T00:04:00Z");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.json["retain_until"]
            .as_str()
            .unwrap()
            .starts_with("2027-06-01")
    );
    let r = obscura(
        &cfg,
        &[
            "ingest",
            common::sample(SPEECH).to_str().unwrap(),
            "--device",
            "cam-us-1",
            "--recorded-at",
            "20260501T000000Z",
        ],
        Some(now),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.json["retain_until"]
            .as_str()
            .unwrap()
            .starts_with("2026-05-31")
    );
}

#[test]
fn dry_run_lists_exactly_what_the_sweep_then_removes() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    // A personal clip (30 d) and a non-personal one (365 d), both with vault originals (7 d).
    let speech = ingest(
        &cfg,
        &common::sample(SPEECH),
        "cam-eu-1",
        &["--recorded-at", "2026-01-01T00:00:00Z"],
    );
    assert_eq!(speech.code, 0, "{}", speech.stderr);
    assert_eq!(speech.json["classification"], "personal");
    let tone = ingest(
        &cfg,
        &common::sample(TONE),
        "cam-eu-1",
        &["--recorded-at", "2026-01-01T00:00:00Z"],
    );
    assert_eq!(tone.code, 0, "{}", tone.stderr);
    let uri_of = |f: &str| format!("file://{}/{f}", d.display());
    // Day 10: only the originals are due; day 40: the personal clip too.
    for (when, want_gone) in [("2026-01-11T00:00:00Z", 4), ("2026-02-10T00:00:00Z", 2)] {
        let dry = obscura(&cfg, &["retention", "sweep", "--dry-run"], Some(when));
        assert_eq!(dry.code, 0, "{}", dry.stderr);
        let mut listed: Vec<String> = dry.json["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        listed.sort();
        let before = common::files_under(d);
        let real = obscura(&cfg, &["retention", "sweep"], Some(when));
        assert_eq!(real.code, 0, "{}", real.stderr);
        let after = common::files_under(d);
        let mut gone: Vec<String> = before
            .iter()
            .filter(|f| !after.contains(f))
            .map(|f| uri_of(f))
            .collect();
        gone.sort();
        let mut removed: Vec<String> = real.json["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        removed.sort();
        assert_eq!(listed, removed, "{when}: dry run vs sweep report");
        assert_eq!(listed, gone, "{when}: dry run vs files really removed");
        assert_eq!(listed.len(), want_gone, "{when}: {listed:?}");
        assert_eq!(dry.json["deleted"], real.json["deleted"]);
        assert_eq!(
            dry.json["originals_deleted"],
            real.json["originals_deleted"]
        );
    }
}

#[test]
fn speech_is_personal_in_every_voice_mode() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let speech = common::sample(SPEECH);
    for (i, mode) in ["mute", "bleep", "disguise", "tag", "keep"]
        .iter()
        .enumerate()
    {
        let device = format!("cam-lab-{}", i + 1);
        let r = ingest(&cfg, &speech, &device, &["--voice", mode]);
        assert_eq!(r.code, 0, "{mode}: {}", r.stderr);
        assert_eq!(r.json["classification"], "personal", "{mode}: {}", r.stdout);
        let s = sidecar(d, "lab", r.json["clip"].as_str().unwrap());
        let labels = s["clip"]["labels"].to_string();
        assert!(
            labels.contains("voice") || labels.contains("audio"),
            "{mode}: {labels}"
        );
        let unredacted = matches!(*mode, "tag" | "keep");
        assert_eq!(s["clip"]["redacted"], !unredacted, "{mode}");
    }
    // A tone (no speech) with no VAD run is personal too: unchecked audio.
    let r = ingest(
        &cfg,
        &common::sample(TONE),
        "cam-lab-6",
        &["--voice", "keep"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["classification"], "personal", "{}", r.stdout);

    // The VAD fails (its model is missing) under on_vad_failure = mute: muted, and personal.
    let models = d.join("models-without-vad");
    std::fs::create_dir_all(&models).unwrap();
    for f in common::listing(&common::models()) {
        if f.ends_with(".onnx") && !f.contains("silero") {
            std::fs::copy(common::models().join(&f), models.join(&f)).unwrap();
        }
    }
    let cfg2 = write_config(
        d,
        &format!(
            "[voice]\non_vad_failure = \"mute\"\n[runtime]\nmodels_dir = \"{}\"\n",
            models.display()
        ),
    );
    let r = obscura(
        &cfg2,
        &[
            "ingest",
            common::sample(TONE).to_str().unwrap(),
            "--device",
            "cam-us-1",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["classification"], "personal", "{}", r.stdout);
    let s = sidecar(d, "us", r.json["clip"].as_str().unwrap());
    assert_eq!(s["voice"]["vad_failed"], true, "{s}");
    assert_eq!(s["clip"]["redacted"], true, "muted is redacted");
}

#[test]
fn unredacted_output_is_refused_by_a_region_not_configured_for_it() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let video = common::sample("city_pan.mp4");
    let r = ingest(&cfg, &video, "cam-us-1", &["--style", "tag"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("not redacted") && r.stderr.contains("accept_unredacted"),
        "{}",
        r.stderr
    );
    assert!(!d.join("us/clips").exists(), "nothing stored");
    let q = common::files_under(&d.join("quarantine"));
    assert_eq!(q.len(), 2, "{q:?}");
    let reason = std::fs::read_to_string(d.join("quarantine").join(&q[1])).unwrap();
    assert!(reason.contains("accept_unredacted"), "{reason}");
    // Unredacted voices too.
    let r = ingest(
        &cfg,
        &common::sample(SPEECH),
        "cam-us-1",
        &["--voice", "keep"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("voices were not redacted"),
        "{}",
        r.stderr
    );
    // A region that accepts it stores it, marked.
    let r = ingest(&cfg, &video, "cam-lab-1", &["--style", "tag"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = sidecar(d, "lab", r.json["clip"].as_str().unwrap());
    assert_eq!(s["clip"]["redacted"], false);
}

#[test]
fn keys_quarantine_copies_exports_and_the_audit_log_are_private() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let r = ingest(&cfg, &common::sample(TONE), "cam-eu-1", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let clip = r.json["clip"].as_str().unwrap().to_string();
    let key = d.join("eu/keys").join(format!("{clip}.key"));
    assert_eq!(mode(&key), 0o600, "key");
    assert_eq!(mode(&d.join("eu/keys")), 0o700, "key folder");
    let original = d.join("eu-vault/originals").join(format!("{clip}.enc"));
    assert_eq!(mode(&original), 0o600, "original");
    assert_eq!(mode(&d.join("eu-vault/originals")), 0o700);
    assert_eq!(mode(&d.join("audit.jsonl")), 0o600, "audit log");
    assert_eq!(mode(&d.join("audit.jsonl.key")), 0o600, "audit key");
    assert_eq!(mode(&d.join("audit.jsonl.head")), 0o600, "audit head");

    // A bad input, readable by all, is quarantined readable by its owner only.
    let bad = d.join("bad.mp4");
    std::fs::write(&bad, b"not media").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(ingest(&cfg, &bad, "cam-eu-1", &[]).code, 1);
    let qdir = d.join("quarantine");
    assert_eq!(mode(&qdir), 0o700, "quarantine folder");
    let q = common::files_under(&qdir);
    assert_eq!(q.len(), 2, "{q:?}");
    for f in &q {
        assert_eq!(mode(&qdir.join(f)), 0o600, "{f}");
    }

    let out = d.join("export");
    let x = obscura(
        &cfg,
        &[
            "export",
            "--account",
            "acct-7",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&out.join(&clip)), 0o700);
    for f in common::files_under(&out) {
        assert_eq!(mode(&out.join(&f)), 0o600, "{f}");
    }
}

/// Rewrites every line of an audit log as an earlier version's plain sha256 chain: what
/// anyone who can write the log can do without the audit key.
fn rechain_with_sha256(text: &str) -> String {
    use obscura::route::audit::{Entry, GENESIS, legacy_hash};
    let mut prev = GENESIS.to_string();
    let mut out = String::new();
    for line in text.lines() {
        let mut e: Entry = serde_json::from_str(line).unwrap();
        e.chain = None;
        e.prev = prev;
        e.hash = legacy_hash(&e);
        prev = e.hash.clone();
        out.push_str(&serde_json::to_string(&e).unwrap());
        out.push('\n');
    }
    out
}

#[test]
fn audit_verify_finds_an_edit_a_cut_tail_and_a_log_rechained_without_the_key() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let log = d.join("audit.jsonl");
    let set = |scope: &str, id: &str, case: &str| {
        let r = obscura(
            &cfg,
            &["hold", "set", scope, id, "--case", case, "--reason", "r"],
            None,
        );
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    set("--device", "cam-eu-1", "case A");
    set("--device", "cam-us-1", "case B");
    set("--account", "acct-9", "case C");
    let verify = || obscura(&cfg, &["audit", "verify"], None);
    let ok = verify();
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.json["entries"], 3, "{}", ok.stdout);
    assert_eq!(ok.json["hmac_from"], 1, "{}", ok.stdout);
    assert_eq!(ok.json["head"], 3, "{}", ok.stdout);

    // The sweep anchors the head (entry 3) in every region's store; one more entry after it.
    let sw = obscura(&cfg, &["retention", "sweep"], None);
    assert_eq!(sw.code, 0, "{}", sw.stderr);
    assert_eq!(
        sw.json["audit_anchored"].as_array().unwrap().len(),
        3,
        "{}",
        sw.stdout
    );
    assert!(d.join("eu/audit/head.json").is_file());
    set("--account", "acct-8", "case D");
    assert_eq!(verify().code, 0);
    let good = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    assert_eq!(lines.len(), 4);
    let restore = || std::fs::write(&log, &good).unwrap();

    // One byte edited in entry 2.
    let edited = good.replacen("cam-us-1", "cam-us-2", 1);
    assert_ne!(edited, good);
    std::fs::write(&log, &edited).unwrap();
    let r = verify();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("entry 2 is broken"), "{}", r.stderr);
    assert_eq!(r.json["ok"], false);
    restore();

    // The last entry cut off: the head file says 4.
    std::fs::write(&log, format!("{}\n", lines[..3].join("\n"))).unwrap();
    let r = verify();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("ends at entry 3") && r.stderr.contains("cut off"),
        "{}",
        r.stderr
    );
    restore();

    // Re-chained with plain sha256 (no key needed): the first entry is not HMAC-chained any
    // more, yet the head file anchors an HMAC entry.
    std::fs::write(&log, rechain_with_sha256(&good)).unwrap();
    let r = verify();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("entry 4 is broken"), "{}", r.stderr);
    // ... and with the head file and the key removed too, the head anchored in the stores
    // by the sweep still finds it.
    std::fs::remove_file(d.join("audit.jsonl.head")).unwrap();
    let key = std::fs::read(d.join("audit.jsonl.key")).unwrap();
    std::fs::remove_file(d.join("audit.jsonl.key")).unwrap();
    let r = verify();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("entry 3 is broken") && r.stderr.contains("audit/head.json"),
        "{}",
        r.stderr
    );
    // The untouched log, key and head verify again.
    std::fs::write(d.join("audit.jsonl.key"), key).unwrap();
    restore();
    set("--account", "acct-7", "case E");
    let r = verify();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["entries"], 5);
}

#[test]
fn a_restricted_clip_stays_stored_and_export_withholds_it_unless_a_hold_case_covers_it() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let (ca, cb) = two_clips(&cfg);
    let export = |name: &str, extra: &[&str]| {
        let out = d.join(name);
        let mut args = vec![
            "export",
            "--account",
            "acct-7",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        (obscura(&cfg, &args, None), out)
    };

    // Unknown ids and releasing what is not restricted are errors that change nothing.
    let before = snapshot(d);
    for args in [
        &["restrict", "set", "--device", "cam-nope", "--reason", "x"][..],
        &["restrict", "release", "--device", "cam-eu-2"][..],
        &["restrict", "list", "--account", "acct-nope"][..],
    ] {
        let r = obscura(&cfg, args, None);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    assert_eq!(snapshot(d), before, "nothing changed");

    let r = obscura(
        &cfg,
        &[
            "restrict",
            "set",
            "--clip",
            &ca,
            "--reason",
            "objects to analytics",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["clips"], serde_json::json!([ca]));
    // The stored record shows the restriction where the clip is.
    let sc = sidecar(d, "eu", &ca);
    assert_eq!(sc["clip"]["restricted"], true, "{sc}");
    assert_eq!(
        sc["clip"]["restrictions"][0]["reason"],
        "objects to analytics"
    );
    assert_eq!(sc["clip"]["restrictions"][0]["by"], "tester");
    assert_eq!(sidecar(d, "eu", &cb)["clip"]["restricted"], false);
    let l = obscura(&cfg, &["restrict", "list", "--json"], None);
    assert_eq!(l.json.as_array().unwrap().len(), 1, "{}", l.stdout);
    assert_eq!(l.json[0]["by"], "tester");

    // Export leaves the restricted clip out, with a note; it stays stored.
    let (x, out) = export("export1", &[]);
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(x.json["clips"], serde_json::json!([cb]), "{}", x.stdout);
    assert!(x.json["withheld"][&ca].is_array(), "{}", x.stdout);
    assert!(x.json["note"].as_str().unwrap().contains("restricted"));
    assert!(!out.join(&ca).exists() && out.join(&cb).is_dir());
    assert!(d.join("eu/clips").join(&ca).join("sidecar.json").is_file());

    // --case naming no hold in force is exit 2 before anything is written.
    let (x, out) = export("export2", &["--case", "case L"]);
    assert_eq!(x.code, 2, "{}", x.stderr);
    assert!(!out.exists());
    // A hold of that case over the clip lets it out for the case.
    let h = obscura(
        &cfg,
        &[
            "hold", "set", "--clip", &ca, "--case", "case L", "--reason", "claim",
        ],
        None,
    );
    assert_eq!(h.code, 0, "{}", h.stderr);
    let (x, out) = export("export3", &["--case", "case L"]);
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(x.json["restricted_exported"], serde_json::json!([ca]));
    assert!(out.join(&ca).join("sidecar.json").is_file());
    // The exported record shows both the hold and the restriction in force.
    let xs: Value =
        serde_json::from_slice(&std::fs::read(out.join(&ca).join("sidecar.json")).unwrap())
            .unwrap();
    assert_eq!(xs["clip"]["restricted"], true, "{xs}");
    assert_eq!(cases(&xs["clip"]["holds"]), ["case L"]);
    let sc = sidecar(d, "eu", &ca);
    assert_eq!(
        (&sc["clip"]["hold"], &sc["clip"]["restricted"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    // Without the case it is still withheld.
    let (x, _) = export("export4", &[]);
    assert!(x.json["withheld"][&ca].is_array(), "{}", x.stdout);

    // Retention still runs over restricted clips: restrict the other one and sweep past its
    // retention; the held one stays.
    let r = obscura(
        &cfg,
        &[
            "restrict", "set", "--device", "cam-eu-2", "--reason", "objects",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sw = obscura(&cfg, &["retention", "sweep"], Some("2031-01-01T00:00:00Z"));
    assert_eq!(sw.code, 0, "{}", sw.stderr);
    assert_eq!(sw.json["deleted"], serde_json::json!([cb]), "{}", sw.stdout);
    assert_eq!(sw.json["held"], serde_json::json!([ca]));

    // Release: exported again without a case.
    let r = obscura(&cfg, &["restrict", "release", "--clip", &ca], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sc = sidecar(d, "eu", &ca);
    assert_eq!(sc["clip"]["restricted"], false, "{sc}");
    assert!(sc["clip"].get("restrictions").is_none(), "{sc}");
    assert_eq!(sc["clip"]["hold"], true, "the hold is still shown");
    let (x, _) = export("export5", &[]);
    assert_eq!(x.json["clips"], serde_json::json!([ca]), "{}", x.stdout);
    assert!(x.json.get("withheld").is_none());
    let actions = audit_actions(d);
    for want in ["restrict_set", "restrict_release"] {
        assert!(actions.iter().any(|a| a == want), "{actions:?}");
    }
    assert_eq!(obscura(&cfg, &["audit", "verify"], None).code, 0);
}

/// `disclose verify DIR [--key FILE]` (needs no configuration).
fn verify_package(dir: &Path, key: Option<&Path>) -> Run {
    let mut c = common::bin();
    c.args(["disclose", "verify"]).arg(dir);
    if let Some(k) = key {
        c.arg("--key").arg(k);
    }
    let o = c.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        json: serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
        stdout: String::from_utf8_lossy(&o.stdout).to_string(),
        stderr: common::stderr(&o),
    }
}

/// A copy of a package folder, to tamper with.
fn copy_tree(from: &Path, to: &Path) {
    for f in common::files_under(from) {
        let t = to.join(&f);
        std::fs::create_dir_all(t.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), t).unwrap();
    }
}

#[test]
fn a_disclosure_package_verifies_and_any_tampering_fails_verification() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let a = ingest(&cfg, &common::sample(TONE), "cam-eu-1", &[]);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let b = ingest(&cfg, &common::sample(SPEECH), "cam-eu-1", &[]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    let (ca, cb) = (
        a.json["clip"].as_str().unwrap().to_string(),
        b.json["clip"].as_str().unwrap().to_string(),
    );
    let out = d.join("pkg");
    let r = obscura(
        &cfg,
        &[
            "disclose",
            "--case",
            "case LE-1",
            "--recipient",
            "District Court 4",
            "--device",
            "cam-eu-1",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut given: Vec<&str> = r.json["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    given.sort();
    let mut want = vec![ca.as_str(), cb.as_str()];
    want.sort();
    assert_eq!(given, want, "{}", r.stdout);

    // Private, complete, and what the manifest says.
    assert_eq!(mode(&out), 0o700);
    let files = common::files_under(&out);
    for f in &files {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["case"], "case LE-1");
    assert_eq!(m["recipient"], "District Court 4");
    assert_eq!(m["by"], "tester");
    assert_eq!(m["region"], "eu");
    assert_eq!(m["selection"]["scope"]["kind"], "device");
    assert_eq!(m["selection"]["originals"], false);
    let listed: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len() + 3, files.len(), "{files:?}");
    for c in [&ca, &cb] {
        assert!(listed.contains(&format!("clips/{c}/sidecar.json").as_str()));
        assert!(
            listed
                .iter()
                .any(|p| p.starts_with(&format!("clips/{c}/media.")))
        );
        assert!(
            !listed.iter().any(|p| p.contains("original")),
            "no originals without --originals"
        );
    }
    for f in m["files"].as_array().unwrap() {
        let p = out.join(f["path"].as_str().unwrap());
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(f["bytes"], bytes.len() as u64);
        assert_eq!(f["sha256"], obscura::fsutil::sha256_bytes(&bytes));
    }

    // It verifies, with the key inside it and with the region's published key.
    let v = verify_package(&out, None);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(v.json["ok"], true);
    assert_eq!(v.json["key_from"], "package");
    let published = d.join("eu/keys/disclose/ed25519.pub.pem");
    let v = verify_package(&out, Some(&published));
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert_eq!(v.json["key_from"], "--key");
    // The signing key sits in the region's key store, the owner's only.
    let sk = d.join("eu/keys/disclose/ed25519.key");
    assert_eq!(mode(&sk), 0o600);
    assert_eq!(mode(&d.join("eu/keys/disclose")), 0o700);
    // A second disclosure signs with the same key.
    let out2 = d.join("pkg2");
    let r2 = obscura(
        &cfg,
        &[
            "disclose",
            "--case",
            "case LE-2",
            "--recipient",
            "Police",
            "--clip",
            &ca,
            "--out",
            out2.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(r2.code, 0, "{}", r2.stderr);
    assert_eq!(r2.json["public_key"], r.json["public_key"]);
    assert_eq!(r2.json["clips"], serde_json::json!([ca]));

    // Tampering, one kind at a time, on a fresh copy each time.
    let media = listed
        .iter()
        .find(|p| p.contains("/media."))
        .unwrap()
        .to_string();
    type Tamper<'a> = Box<dyn Fn(&Path) + 'a>;
    let tampers: Vec<(&str, Tamper)> = vec![
        (
            "one byte of a media file flipped",
            Box::new(|p: &Path| {
                let f = p.join(&media);
                let mut b = std::fs::read(&f).unwrap();
                let i = b.len() / 2;
                b[i] ^= 1;
                std::fs::write(&f, b).unwrap();
            }),
        ),
        (
            "the manifest edited",
            Box::new(|p: &Path| {
                let f = p.join("manifest.json");
                let t = std::fs::read_to_string(&f).unwrap();
                std::fs::write(&f, t.replace("District Court 4", "District Court 5")).unwrap();
            }),
        ),
        (
            "a file added",
            Box::new(|p: &Path| std::fs::write(p.join("clips").join("extra.txt"), b"x").unwrap()),
        ),
        (
            "a file removed",
            Box::new(|p: &Path| std::fs::remove_file(p.join(&media)).unwrap()),
        ),
        (
            "the signature removed",
            Box::new(|p: &Path| std::fs::remove_file(p.join("manifest.sig")).unwrap()),
        ),
    ];
    for (i, (what, tamper)) in tampers.iter().enumerate() {
        let copy = d.join(format!("tampered-{i}"));
        copy_tree(&out, &copy);
        assert_eq!(
            verify_package(&copy, None).code,
            0,
            "{what}: the copy verifies"
        );
        tamper(&copy);
        let v = verify_package(&copy, None);
        assert_eq!(v.code, 1, "{what}: {}", v.stdout);
        assert_eq!(v.json["ok"], false, "{what}");
        assert_eq!(v.stderr.lines().count(), 1, "{what}: {}", v.stderr);
    }
    // A package re-signed by another key passes its own key, not the region's.
    let other = d.join("other.pem");
    std::fs::write(
        &other,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let v = verify_package(&out, Some(&other));
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stderr.contains("signature"), "{}", v.stderr);

    // Recorded: case, recipient, clips and the manifest's hash; the chain still verifies.
    let log = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
    let entry: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["action"] == "disclose")
        .expect("a disclose entry");
    let detail = entry["detail"].as_str().unwrap();
    for want in [
        "case LE-1",
        "District Court 4",
        ca.as_str(),
        cb.as_str(),
        r.json["manifest_sha256"].as_str().unwrap(),
    ] {
        assert!(detail.contains(want), "{want}: {detail}");
    }
    assert_eq!(entry["device"], "cam-eu-1");
    assert_eq!(
        r.json["manifest_sha256"],
        obscura::fsutil::sha256_bytes(&std::fs::read(out.join("manifest.json")).unwrap())
    );
    assert_eq!(
        audit_actions(d).iter().filter(|a| *a == "disclose").count(),
        2
    );
    let v = obscura(&cfg, &["audit", "verify"], None);
    assert_eq!(v.code, 0, "{}", v.stderr);
}

#[test]
fn disclose_withholds_restricted_clips_and_gives_originals_only_under_a_hold_of_the_case() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let (ca, cb) = two_clips(&cfg);
    let disclose = |name: &str, extra: &[&str]| {
        let out = d.join(name);
        let mut args = vec![
            "disclose",
            "--case",
            "case P-9",
            "--recipient",
            "Police unit 3",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        (obscura(&cfg, &args, None), out)
    };
    let r = obscura(
        &cfg,
        &["restrict", "set", "--clip", &ca, "--reason", "objects"],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Restricted and not held by the case: withheld, and the manifest says why.
    let (x, out) = disclose("p1", &["--account", "acct-7"]);
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(x.json["clips"], serde_json::json!([cb]), "{}", x.stdout);
    assert!(!out.join("clips").join(&ca).exists());
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["withheld"][0]["clip"], ca.as_str());
    assert_eq!(m["withheld"][0]["what"], "clip");
    let why = m["withheld"][0]["why"].as_str().unwrap();
    assert!(
        why.contains("restricted") && why.contains("case P-9"),
        "{why}"
    );
    assert_eq!(verify_package(&out, None).code, 0);

    // --originals without a hold of the case: refused, nothing written.
    let other = obscura(
        &cfg,
        &[
            "hold",
            "set",
            "--clip",
            &cb,
            "--case",
            "case other",
            "--reason",
            "r",
        ],
        None,
    );
    assert_eq!(other.code, 0, "{}", other.stderr);
    let before = snapshot(d);
    let (x, out) = disclose("p2", &["--clip", &cb, "--originals"]);
    assert_eq!(x.code, 2, "{}", x.stderr);
    assert!(
        x.stderr.contains("--originals") && x.stderr.contains("case P-9") && x.stderr.contains(&cb),
        "{}",
        x.stderr
    );
    assert!(!out.exists());
    assert!(
        snapshot(d) == before,
        "a refused disclosure changed something"
    );

    // With a hold of the case over both: the restricted one is given, with the originals.
    let h = obscura(
        &cfg,
        &[
            "hold",
            "set",
            "--account",
            "acct-7",
            "--case",
            "case P-9",
            "--reason",
            "warrant 12",
        ],
        None,
    );
    assert_eq!(h.code, 0, "{}", h.stderr);
    let (x, out) = disclose("p3", &["--account", "acct-7", "--originals"]);
    assert_eq!(x.code, 0, "{}", x.stderr);
    let mut given: Vec<String> = x.json["originals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    given.sort();
    let mut want = vec![ca.clone(), cb.clone()];
    want.sort();
    assert_eq!(given, want, "{}", x.stdout);
    let tone = std::fs::read(common::sample(TONE)).unwrap();
    for c in [&ca, &cb] {
        assert_eq!(
            std::fs::read(out.join("clips").join(c).join("original.wav")).unwrap(),
            tone,
            "the original, decrypted"
        );
    }
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert!(m["withheld"].as_array().unwrap().is_empty(), "{m}");
    let restricted: Vec<&Value> = m["clips"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["restricted"] == true)
        .collect();
    assert_eq!(restricted.len(), 1);
    assert_eq!(restricted[0]["id"], ca.as_str());
    assert_eq!(restricted[0]["original"], true);
    // The record given shows the restriction and the hold in force.
    let given: Value = serde_json::from_slice(
        &std::fs::read(out.join("clips").join(&ca).join("sidecar.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(given["clip"]["restricted"], true, "{given}");
    assert_eq!(given["clip"]["hold"], true, "{given}");
    assert_eq!(verify_package(&out, None).code, 0);
    assert_eq!(
        mode(&out.join("clips").join(&ca).join("original.wav")),
        0o600
    );
    assert_eq!(obscura(&cfg, &["audit", "verify"], None).code, 0);
}

#[test]
fn disclose_refuses_unknown_ids_and_a_non_empty_out_folder_writing_nothing() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let r = ingest(&cfg, &common::sample(TONE), "cam-us-1", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let unknown_clip = "0".repeat(64);
    let out = d.join("pkg");
    let used = d.join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("a.txt"), b"x").unwrap();
    let base = |sel: &[&str], out: &Path| {
        let mut v: Vec<String> = [
            "disclose",
            "--case",
            "c",
            "--recipient",
            "court",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(sel.iter().map(|s| s.to_string()));
        v
    };
    for (sel, id, o) in [
        (vec!["--device", "cam-nope"], "cam-nope", &out),
        (vec!["--account", "acct-nope"], "acct-nope", &out),
        (
            vec!["--clip", unknown_clip.as_str()],
            unknown_clip.as_str(),
            &out,
        ),
        (vec!["--device", "cam-us-1"], "not empty", &used),
    ] {
        let args = base(&sel, o);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = snapshot(d);
        let x = obscura(&cfg, &args, None);
        assert_eq!(x.code, 2, "{args:?}: {}", x.stderr);
        assert!(x.stderr.contains(id), "{args:?}: {}", x.stderr);
        assert_eq!(x.stderr.lines().count(), 1, "{}", x.stderr);
        assert!(snapshot(d) == before, "{args:?} changed something");
        assert!(!out.exists());
    }
    assert!(!audit_actions(d).iter().any(|a| a == "disclose"));
    // Not a package: exit 2.
    assert_eq!(verify_package(&d.join("nowhere"), None).code, 2);
}

#[test]
fn disclose_gives_media_stored_unredacted_only_on_the_terms_of_originals() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let r = ingest(
        &cfg,
        &common::sample(TONE),
        "cam-lab-2",
        &["--voice", "keep"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let clip = r.json["clip"].as_str().unwrap().to_string();
    assert_eq!(sidecar(d, "lab", &clip)["clip"]["redacted"], false);
    let disclose = |name: &str, extra: &[&str]| {
        let out = d.join(name);
        let mut args = vec![
            "disclose",
            "--case",
            "case U",
            "--recipient",
            "court",
            "--device",
            "cam-lab-2",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        (obscura(&cfg, &args, None), out)
    };
    let (x, out) = disclose("p1", &[]);
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(x.json["clips"], serde_json::json!([]), "{}", x.stdout);
    assert_eq!(x.json["withheld"][0]["clip"], clip.as_str());
    assert!(
        x.json["withheld"][0]["why"]
            .as_str()
            .unwrap()
            .contains("unredacted")
    );
    assert!(!out.join("clips").exists());
    assert_eq!(verify_package(&out, None).code, 0);
    let (x, out) = disclose("p2", &["--originals"]);
    assert_eq!(x.code, 2, "{}", x.stderr);
    assert!(!out.exists());
    let h = obscura(
        &cfg,
        &[
            "hold", "set", "--clip", &clip, "--case", "case U", "--reason", "order",
        ],
        None,
    );
    assert_eq!(h.code, 0, "{}", h.stderr);
    let (x, out) = disclose("p3", &["--originals"]);
    assert_eq!(x.code, 0, "{}", x.stderr);
    assert_eq!(x.json["clips"], serde_json::json!([clip]), "{}", x.stdout);
    // The lab region has no vault: the unredacted media is given, the original listed as
    // withheld.
    assert_eq!(x.json["withheld"][0]["what"], "original", "{}", x.stdout);
    assert!(out.join("clips").join(&clip).join("sidecar.json").is_file());
    assert_eq!(verify_package(&out, None).code, 0);
}

/// `obscura correct --clip ID ... --reason TEXT`.
fn correct(cfg: &Path, clip: &str, args: &[&str]) -> Run {
    let mut a = vec!["correct", "--clip", clip];
    a.extend_from_slice(args);
    obscura(cfg, &a, None)
}

/// What `retention sweep --dry-run` at `now` would delete whole.
fn would_delete(cfg: &Path, now: &str) -> Value {
    let r = obscura(cfg, &["retention", "sweep", "--dry-run"], Some(now));
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.json["deleted"].clone()
}

#[test]
fn a_corrected_record_moves_the_retention_is_audited_and_unknown_ids_change_nothing() {
    let dir = common::scratch();
    let d = dir.path();
    let cfg = write_config(d, "");
    let a = ingest(
        &cfg,
        &common::sample(TONE),
        "cam-eu-1",
        &["--recorded-at", "2026-01-01T00:00:00Z"],
    );
    assert_eq!(a.code, 0, "{}", a.stderr);
    let ca = a.json["clip"].as_str().unwrap().to_string();
    assert_eq!(a.json["classification"], "non_personal", "{}", a.stdout);
    // Non-personal: 365 days from 2026-01-01.
    assert_eq!(
        sidecar(d, "eu", &ca)["clip"]["retain_until"],
        "2027-01-01T00:00:00Z"
    );
    let later = "2027-06-01T00:00:00Z";
    assert_eq!(would_delete(&cfg, later), serde_json::json!([ca]));

    // Refusals change nothing: an unknown clip, an unknown account, no reason, nothing to
    // correct, a time in the future, a classification that is not one.
    let before = snapshot(d);
    let unknown = "f".repeat(64);
    for (clip, args, code) in [
        (
            unknown.as_str(),
            &["--recorded-at", "2026-02-01T00:00:00Z", "--reason", "x"][..],
            2,
        ),
        (
            ca.as_str(),
            &["--account", "acct-nope", "--reason", "x"][..],
            2,
        ),
        (
            ca.as_str(),
            &["--recorded-at", "2026-02-01T00:00:00Z"][..],
            2,
        ),
        (ca.as_str(), &["--reason", "x"][..], 2),
        (
            ca.as_str(),
            &["--recorded-at", "2099-01-01T00:00:00Z", "--reason", "x"][..],
            2,
        ),
        (
            ca.as_str(),
            &["--classification", "secret", "--reason", "x"][..],
            2,
        ),
    ] {
        let r = correct(&cfg, clip, args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.trim().is_empty(), "{args:?}: a clear error");
    }
    let r = correct(
        &cfg,
        &unknown,
        &["--recorded-at", "2026-02-01T00:00:00Z", "--reason", "x"],
    );
    assert!(r.stderr.contains("unknown clip"), "{}", r.stderr);
    assert_eq!(snapshot(d), before, "nothing changed");

    // The camera's clock was wrong: the clip was recorded on 2026-11-01. The expiry moves.
    let r = correct(
        &cfg,
        &ca,
        &[
            "--recorded-at",
            "2026-11-01T00:00:00Z",
            "--reason",
            "camera clock was 10 months behind",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.json["retain_until"], "2027-11-01T00:00:00Z",
        "{}",
        r.stdout
    );
    let s = sidecar(d, "eu", &ca);
    assert_eq!(s["clip"]["recorded_at"], "2026-11-01T00:00:00Z");
    assert_eq!(s["clip"]["retain_until"], "2027-11-01T00:00:00Z");
    assert_eq!(s["clip"]["originals_retain_until"], "2026-11-08T00:00:00Z");
    let c = &s["clip"]["corrections"][0];
    assert_eq!(
        (&c["field"], &c["old"], &c["new"], &c["by"]),
        (
            &Value::from("recorded_at"),
            &Value::from("2026-01-01T00:00:00Z"),
            &Value::from("2026-11-01T00:00:00Z"),
            &Value::from("tester")
        )
    );
    assert_eq!(would_delete(&cfg, later), serde_json::json!([]));
    assert_eq!(
        would_delete(&cfg, "2027-11-02T00:00:00Z"),
        serde_json::json!([ca])
    );

    // Upgraded to personal (30 days); then downgraded, which is marked as such.
    let r = correct(
        &cfg,
        &ca,
        &[
            "--classification",
            "personal",
            "--reason",
            "a voice is audible",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["retain_until"], "2026-12-01T00:00:00Z");
    assert_eq!(r.json["downgrade"], false);
    assert_eq!(would_delete(&cfg, later), serde_json::json!([ca]));
    let r = correct(
        &cfg,
        &ca,
        &[
            "--classification",
            "non-personal",
            "--reason",
            "the voice is a radio announcer",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json["downgrade"], true);
    assert_eq!(
        sidecar(d, "eu", &ca)["clip"]["classification"],
        "non_personal"
    );

    // A hold still wins over the recomputed retention.
    let h = obscura(
        &cfg,
        &[
            "hold",
            "set",
            "--account",
            "acct-7",
            "--case",
            "case C",
            "--reason",
            "claim",
        ],
        None,
    );
    assert_eq!(h.code, 0, "{}", h.stderr);
    let sw = obscura(
        &cfg,
        &["retention", "sweep", "--dry-run"],
        Some("2029-01-01T00:00:00Z"),
    );
    assert_eq!(sw.json["held"], serde_json::json!([ca]), "{}", sw.stdout);
    assert_eq!(sw.json["deleted"], serde_json::json!([]));
    // A correction that would take the clip out of that hold is refused, nothing changed.
    let before = snapshot(d);
    let r = correct(
        &cfg,
        &ca,
        &["--account", "acct-8", "--reason", "leased to acct-8"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("case C"), "{}", r.stderr);
    assert_eq!(snapshot(d), before, "nothing changed");
    // Held by its id too, the account can be corrected and the record still shows the hold.
    let h = obscura(
        &cfg,
        &[
            "hold", "set", "--clip", &ca, "--case", "case C", "--reason", "claim",
        ],
        None,
    );
    assert_eq!(h.code, 0, "{}", h.stderr);
    let r = correct(
        &cfg,
        &ca,
        &["--account", "acct-8", "--reason", "leased to acct-8"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = sidecar(d, "eu", &ca);
    assert_eq!(s["clip"]["account"], "acct-8");
    assert_eq!(s["clip"]["hold"], true);
    assert_eq!(s["clip"]["corrections"].as_array().unwrap().len(), 4);

    // Audited: one entry per correction, naming field, old -> new, who and why.
    let log = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["action"] == "correct")
        .collect();
    assert_eq!(entries.len(), 4, "{log}");
    let first = entries[0]["detail"].as_str().unwrap();
    assert!(
        first.contains("recorded_at \"2026-01-01T00:00:00Z\" -> \"2026-11-01T00:00:00Z\"")
            && first.contains("tester")
            && first.contains("camera clock"),
        "{first}"
    );
    assert!(entries[2]["detail"].as_str().unwrap().contains("DOWNGRADE"));
    let v = obscura(&cfg, &["audit", "verify"], None);
    assert_eq!(v.code, 0, "{}", v.stderr);
}
