//! Routing end to end through the real binary: two regions on local folders and on a real
//! S3-compatible server (s3s-fs, a separate process on loopback, started here), ingest,
//! idempotency, minors, traversal ids, holds, erase, export, a sweep with the clock moved
//! past retention, and a tampered audit log.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn write_config(dir: &Path, eu_store: &str, us_store: &str) -> PathBuf {
    let text = format!(
        r#"
[regions.eu]
store = "{eu_store}"
vault = "file://{vault}"
keys = "file://{keys}"
[regions.us]
store = "{us_store}"

[devices]
"cam-eu-1" = {{ region = "eu", account = "acct-7", minor = false }}
"cam-us-1" = {{ region = "us", account = "acct-8", minor = false }}
"cam-kid" = {{ region = "eu", account = "acct-9", minor = true }}

[retention]
personal = "30d"
non_personal = "365d"
originals = "7d"

[paths]
quarantine = "{q}"
audit = "{a}"
work = "{w}"
"#,
        vault = dir.join("eu-vault").display(),
        keys = dir.join("eu-keys").display(),
        q = dir.join("quarantine").display(),
        a = dir.join("audit.jsonl").display(),
        w = dir.join("work").display(),
    );
    let p = dir.join("obscura.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn obscura(cfg: &Path, args: &[&str], env_now: Option<&str>) -> (i32, serde_json::Value, String) {
    let mut c = common::bin();
    c.args(args).arg("--config").arg(cfg);
    c.env("AWS_ACCESS_KEY_ID", "obscura")
        .env("AWS_SECRET_ACCESS_KEY", "obscura-secret")
        .env("AWS_REGION", "us-east-1");
    if let Some(n) = env_now {
        c.env("OBSCURA_NOW", n);
    }
    let o = c.output().unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code().unwrap_or(-1), v, common::stderr(&o))
}

fn files_under(p: &Path) -> Vec<String> {
    let mut v = Vec::new();
    fn walk(p: &Path, base: &Path, v: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, base, v);
                } else {
                    v.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
    }
    walk(p, p, &mut v);
    v.sort();
    v
}

/// Checks the retention metadata on a stored S3 object.
fn retention_metadata(store_url: &str, key: &str) -> Vec<(String, String)> {
    // SAFETY: tests in this file set the same values; no other thread reads them concurrently.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "obscura");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "obscura-secret");
    }
    let st = obscura::route::store::Store::open(store_url).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(st.metadata(key)).unwrap()
}

fn run_scenario(dir: &Path, eu_store: &str, us_store: &str, us_root_for_listing: Option<&Path>) {
    let cfg = write_config(dir, eu_store, us_store);
    let video = common::sample("city_pan.mp4");
    let audio = common::sample("audio/tone_440hz_2s_16k.wav");

    // Ingest routes each device to its own region.
    let (code, eu, err) = obscura(
        &cfg,
        &[
            "ingest",
            video.to_str().unwrap(),
            "--device",
            "cam-eu-1",
            "--recorded-at",
            "2026-01-01T00:00:00Z",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(eu["region"], "eu");
    assert_eq!(eu["classification"], "personal");
    assert_eq!(eu["stored"], true);
    let clip_eu = eu["clip"].as_str().unwrap().to_string();
    assert_eq!(
        clip_eu,
        obscura::route::clip_id(&obscura::fsutil::sha256_file(&video).unwrap(), "cam-eu-1")
    );
    let (code, us, err) = obscura(
        &cfg,
        &[
            "ingest",
            audio.to_str().unwrap(),
            "--device",
            "cam-us-1",
            "--recorded-at",
            "2026-01-01T00:00:00Z",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(us["region"], "us");
    assert_eq!(
        us["classification"], "non_personal",
        "a tone has no face and no voice"
    );
    let clip_us = us["clip"].as_str().unwrap().to_string();
    assert!(
        us["retain_until"]
            .as_str()
            .unwrap()
            .starts_with("2027-01-01")
    );
    if eu_store.starts_with("s3://") {
        // Retention travels with the object itself, for bucket lifecycle rules.
        let media = format!("clips/{clip_eu}/media.mp4");
        let meta = retention_metadata(eu_store, &media);
        assert!(
            meta.iter()
                .any(|(k, v)| k == "obscura-retain-until" && v.starts_with("2026-01-31")),
            "{meta:?}"
        );
        assert!(
            meta.iter()
                .any(|(k, v)| k == "obscura-classification" && v == "personal"),
            "{meta:?}"
        );
    }

    // Nothing of the eu clip in us, and vice versa (local listing where available).
    if let Some(us_root) = us_root_for_listing {
        let us_files = files_under(us_root).join("\n");
        assert!(
            !us_files.contains(&clip_eu),
            "eu clip leaked into us: {us_files}"
        );
        assert!(us_files.contains(&clip_us));
    }
    // The vault holds the encrypted original, the key store its key; the original is not in clear.
    let vault = files_under(&dir.join("eu-vault"));
    assert_eq!(vault, vec![format!("originals/{clip_eu}.enc")]);
    let enc = std::fs::read(dir.join("eu-vault").join(&vault[0])).unwrap();
    let plain = std::fs::read(&video).unwrap();
    assert!(
        !enc.windows(64).any(|w| w == &plain[1000..1064]),
        "original stored in clear"
    );
    assert_eq!(
        files_under(&dir.join("eu-keys")),
        vec![format!("keys/{clip_eu}.key")]
    );

    // Re-ingest is idempotent.
    let (code, again, _) = obscura(
        &cfg,
        &["ingest", video.to_str().unwrap(), "--device", "cam-eu-1"],
        None,
    );
    assert_eq!(code, 0);
    assert_eq!(again["stored"], false);
    assert_eq!(again["clip"], clip_eu.as_str());

    // A minor's personal clip is not stored and no copy is kept (not even in the
    // quarantine); only an audit entry records the refusal.
    let q_before = files_under(&dir.join("quarantine"));
    let (code, _, err) = obscura(
        &cfg,
        &["ingest", video.to_str().unwrap(), "--device", "cam-kid"],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("minor"), "{err}");
    assert_eq!(
        files_under(&dir.join("quarantine")),
        q_before,
        "no copy of a minor's clip"
    );
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"refuse-minor\""), "{audit}");
    // Unknown device and traversal ids: errors, nothing stored.
    // (NUL cannot reach argv; the id unit tests cover it.)
    for bad in [
        "cam-nope",
        "../../etc",
        "/abs",
        "cam-eu-1/../x",
        &"x".repeat(300),
    ] {
        let (code, _, err) = obscura(
            &cfg,
            &["ingest", audio.to_str().unwrap(), "--device", bad],
            None,
        );
        assert_eq!(code, 1, "{bad:?}: {err}");
    }
    let q = files_under(&dir.join("quarantine"));
    assert!(q.iter().any(|f| f.ends_with(".reason.json")), "{q:?}");

    // Two holds for two cases (the device, the account), then erase the eu device: the held
    // clip stays and is reported with both cases.
    let (code, h, err) = obscura(
        &cfg,
        &[
            "hold", "set", "--device", "cam-eu-1", "--case", "case 42", "--reason", "subpoena",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(h["clips"][0], clip_eu.as_str());
    let (code, _, err) = obscura(
        &cfg,
        &[
            "hold",
            "set",
            "--account",
            "acct-7",
            "--case",
            "case 44",
            "--reason",
            "dispute",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (_, e, _) = obscura(&cfg, &["erase", "--device", "cam-eu-1"], None);
    assert_eq!(e["held"][0], clip_eu.as_str());
    assert_eq!(
        e["held_by"][&clip_eu],
        serde_json::json!(["case 42", "case 44"])
    );
    assert!(e["erased"].as_array().unwrap().is_empty());

    // Export the account: media and record.
    let out = dir.join("export");
    let (code, x, err) = obscura(
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
    assert_eq!(code, 0, "{err}");
    assert_eq!(x["clips"][0], clip_eu.as_str());
    let exported = files_under(&out);
    assert!(
        exported.contains(&format!("{clip_eu}/media.mp4"))
            && exported.contains(&format!("{clip_eu}/sidecar.json")),
        "{exported:?}"
    );
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(&clip_eu).join("sidecar.json")).unwrap())
            .unwrap();
    assert_eq!(rec["clip"]["account"], "acct-7");
    // The record shows the holds in force, and so does the export's answer.
    assert_eq!(rec["clip"]["hold"], true);
    assert_eq!(rec["clip"]["holds"].as_array().unwrap().len(), 2, "{rec}");
    assert_eq!(x["holds"].as_array().unwrap().len(), 2, "{x}");
    assert_eq!(rec["clip"]["legal_basis"], "legitimate_interest");
    assert!(
        rec["clip"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "face")
    );
    let media_sha = rec["clip"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "media")
        .unwrap()["sha256"]
        .clone();
    assert_eq!(
        media_sha,
        obscura::fsutil::sha256_file(&out.join(&clip_eu).join("media.mp4"))
            .unwrap()
            .as_str()
    );

    // Sweep with the clock past the eu clip's retention (30 d) but before the us one (365 d):
    // the held eu clip stays, the us clip is not yet due.
    let later = "2026-03-01T00:00:00Z";
    let (_, s, _) = obscura(&cfg, &["retention", "sweep", "--dry-run"], Some(later));
    assert_eq!(s["held"][0], clip_eu.as_str());
    assert!(s["deleted"].as_array().unwrap().is_empty());
    // Releasing one case leaves the other in force: still held.
    let (code, r, err) = obscura(
        &cfg,
        &[
            "hold",
            "release",
            "--case",
            "case 42",
            "--reason",
            "case closed",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["still_held"][0], clip_eu.as_str());
    let (_, s, _) = obscura(&cfg, &["retention", "sweep"], Some(later));
    assert_eq!(s["held_by"][&clip_eu], serde_json::json!(["case 44"]));
    assert!(s["deleted"].as_array().unwrap().is_empty());
    // Release the last case: the sweep deletes exactly the expired, unheld clip.
    let (code, _, err) = obscura(&cfg, &["hold", "release", "--case", "case 44"], None);
    assert_eq!(code, 0, "{err}");
    let (_, s, _) = obscura(&cfg, &["retention", "sweep"], Some(later));
    assert_eq!(s["deleted"].as_array().unwrap().len(), 1);
    assert_eq!(s["deleted"][0], clip_eu.as_str());
    assert!(
        files_under(&dir.join("eu-vault")).is_empty(),
        "original erased"
    );
    assert!(files_under(&dir.join("eu-keys")).is_empty(), "key shredded");
    // The us clip goes when its year is over.
    let (_, s, _) = obscura(&cfg, &["retention", "sweep"], Some("2027-06-01T00:00:00Z"));
    assert_eq!(s["deleted"][0], clip_us.as_str());

    // The audit log verifies, and a tampered one does not.
    let (code, a, _) = obscura(&cfg, &["audit", "verify"], None);
    assert_eq!(code, 0);
    assert!(a["entries"].as_u64().unwrap() >= 8, "{a}");
    let log = dir.join("audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("case 42", "case 43", 1)).unwrap();
    let (code, a, _) = obscura(&cfg, &["audit", "verify"], None);
    assert_eq!(code, 1);
    assert!(a["error"].as_str().unwrap().contains("broken"), "{a}");
}

#[test]
fn two_regions_on_local_folders() {
    let dir = common::scratch();
    let eu = format!("file://{}", dir.path().join("eu").display());
    let us = format!("file://{}", dir.path().join("us").display());
    run_scenario(dir.path(), &eu, &us, Some(&dir.path().join("us")));
}

#[test]
fn two_regions_on_a_real_s3_server() {
    let s3 = common::start_s3(&["obscura-eu", "obscura-us"]);
    let dir = common::scratch();
    let eu = format!(
        "s3://obscura-eu/clips?endpoint=http://127.0.0.1:{}&region=us-east-1",
        s3.port
    );
    let us = format!(
        "s3://obscura-us/clips?endpoint=http://127.0.0.1:{}&region=us-east-1",
        s3.port
    );
    run_scenario(
        dir.path(),
        &eu,
        &us,
        Some(&s3._root.path().join("obscura-us")),
    );
}

#[test]
fn an_unreachable_store_stores_nothing_and_keeps_the_input() {
    let dir = common::scratch();
    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = write_config(
        dir.path(),
        &format!("s3://b/x?endpoint=http://127.0.0.1:{port}&region=us-east-1"),
        &format!("file://{}", dir.path().join("us").display()),
    );
    let input = dir.path().join("clip.mp4");
    std::fs::copy(common::sample("city_pan.mp4"), &input).unwrap();
    let (code, _, err) = obscura(
        &cfg,
        &["ingest", input.to_str().unwrap(), "--device", "cam-eu-1"],
        None,
    );
    assert_ne!(code, 0, "{err}");
    assert!(input.exists(), "the input is kept");
    assert!(
        files_under(&dir.path().join("eu-vault")).is_empty()
            && files_under(&dir.path().join("eu-keys")).is_empty(),
        "nothing left behind"
    );
    assert!(
        files_under(&dir.path().join("quarantine"))
            .iter()
            .any(|f| f.ends_with(".reason.json"))
    );
}

/// A region store on a 300 KiB tmpfs: the redacted clip (1.4 MB) does not fit. Nothing may be
/// visible in the store afterwards, the input stays, and the error says what happened.
#[test]
fn a_store_that_fills_up_mid_write_leaves_no_partial_object() {
    let dir = common::scratch();
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=300k", "tmpfs"])
        .arg(&small)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let cfg = write_config(
        dir.path(),
        &format!("file://{}", small.join("eu").display()),
        &format!("file://{}", dir.path().join("us").display()),
    );
    let input = dir.path().join("clip.mp4");
    std::fs::copy(common::sample("city_pan.mp4"), &input).unwrap();
    let (code, _, err) = obscura(
        &cfg,
        &["ingest", input.to_str().unwrap(), "--device", "cam-eu-1"],
        None,
    );
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("No space left") || err.to_lowercase().contains("space"),
        "{err}"
    );
    assert!(input.exists(), "the input is kept");
    let left = files_under(&small);
    assert!(
        left.is_empty(),
        "nothing visible in the full store: {left:?}"
    );
    assert!(
        files_under(&dir.path().join("eu-keys")).is_empty()
            && files_under(&dir.path().join("eu-vault")).is_empty(),
        "what was uploaded before the failure was removed"
    );
    assert!(
        files_under(&dir.path().join("quarantine"))
            .iter()
            .any(|f| f.ends_with(".reason.json"))
    );
}

/// A bad clip with a long (legal) file name could not be quarantined: the stamp added to its
/// name passed the 255-byte limit, so the copy and its reason were never written (and the
/// daemon kept retrying the clip). The quarantined name is shortened, its extension kept.
#[test]
fn regression_issue_6_a_bad_clip_with_a_long_name_is_quarantined() {
    let dir = common::scratch();
    let eu = format!("file://{}", dir.path().join("eu").display());
    let us = format!("file://{}", dir.path().join("us").display());
    let cfg = write_config(dir.path(), &eu, &us);
    let input = dir.path().join(format!("{}.mp4", "c".repeat(246)));
    std::fs::write(&input, b"not a video at all").unwrap();
    let (code, _, err) = obscura(
        &cfg,
        &["ingest", input.to_str().unwrap(), "--device", "cam-eu-1"],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a media file"), "{err}");
    let q = files_under(&dir.path().join("quarantine"));
    assert_eq!(q.len(), 2, "{q:?}: {err}");
    assert!(q.iter().all(|f| f.len() <= 255), "{q:?}");
    assert!(
        q[0].ends_with(".mp4") && q[1].ends_with(".mp4.reason.json"),
        "{q:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("quarantine").join(&q[0])).unwrap(),
        b"not a video at all"
    );
    assert!(input.exists(), "ingest leaves the caller's file alone");
}
