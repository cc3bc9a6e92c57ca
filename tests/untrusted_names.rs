//! Suite 8 of RELIABILITY.md: untrusted names. The ids a device or an operator supplies
//! (the 100 000-case proptest is in src/route/ids.rs), unknown configuration keys at every
//! level, and symbolic links around a store: a store whose base folder is a link works (the
//! operator chose it), a link planted inside a store never lets a clip be written outside it.

mod common;

use std::path::{Path, PathBuf};

use obscura::route::ids;

#[test]
fn traversal_nul_absolute_overlong_and_lookalike_ids_are_refused() {
    let long255 = "a".repeat(255);
    let long256 = "a".repeat(256);
    let long_utf8 = "é".repeat(200); // 400 bytes
    let bad: Vec<&str> = vec![
        "..",
        ".",
        "../x",
        "x/..",
        "a/../b",
        "/",
        "a/b",
        "/etc/passwd",
        "/abs/path",
        "C:\\Windows",
        "a\\b",
        "\0",
        "cam\0",
        "cam\0../../x",
        &long255,
        &long256,
        &long_utf8,
        "~root",
        "%2e%2e",
        "cam 1",
        "cam\t1",
        "cam\n1",
        "cam\u{200b}1",             // zero-width space
        "c\u{0430}m-1",             // Cyrillic a
        "cam\u{2010}1",             // Unicode hyphen
        "cam\u{ff0d}1",             // fullwidth hyphen-minus
        "\u{ff43}\u{ff41}\u{ff4d}", // fullwidth "cam"
        "cam\u{2024}1",             // one-dot leader (looks like '.')
        "\u{2024}\u{2024}",         // looks like ".."
        "cam\u{2215}1",             // division slash (looks like '/')
        "cam\u{ff0f}1",             // fullwidth solidus
        "cam\u{2044}1",             // fraction slash
        "cam\u{202e}1",             // right-to-left override
        "-rf",
        ".hidden",
    ];
    for b in &bad {
        assert!(ids::device(b).is_err(), "device {b:?} accepted");
        assert!(ids::account(b).is_err(), "account {b:?} accepted");
        assert!(ids::region(b).is_err(), "region {b:?} accepted");
        assert!(ids::clip(b).is_err(), "clip {b:?} accepted");
    }
    // What is allowed stays allowed (and is at most 64 bytes).
    assert!(ids::device(&"a".repeat(64)).is_ok());
    assert!(ids::device(&"a".repeat(65)).is_err());
}

#[test]
fn unknown_config_keys_are_rejected_at_every_level() {
    let base = r#"
[regions.eu]
store = "file:///tmp/obscura-never/eu"
[devices]
"cam-1" = { region = "eu", account = "acct-1", minor = false }
"#;
    assert!(
        obscura::config::Config::parse(base).is_ok(),
        "the base parses"
    );
    let cases = [
        "bogus = 1\n",
        "[runtime]\nbogus = 1\n",
        "[detect]\nbogus = 1\n",
        "[tracker]\nbogus = 1\n",
        "[redact]\nbogus = 1\n",
        "[voice]\nbogus = 1\n",
        "[encode]\nbogus = 1\n",
        "[limits]\nbogus = 1\n",
        "[retention]\nbogus = \"1d\"\n",
        "[paths]\nbogus = \"/x\"\n",
        "[regions.us]\nstore = \"file:///tmp/x\"\nbogus = 1\n",
        "[devices.\"cam-2\"]\nregion = \"eu\"\naccount = \"a\"\nminor = false\nbogus = 1\n",
        "[bogus]\nx = 1\n",
    ];
    for c in cases {
        let text = format!("{base}{c}");
        let e = obscura::config::Config::parse(&text)
            .err()
            .unwrap_or_else(|| panic!("accepted an unknown key: {c}"));
        assert!(
            e.to_string().contains("bogus") || e.to_string().contains("unknown"),
            "{c}: {e}"
        );
    }
}

fn config(dir: &Path, store: &Path) -> PathBuf {
    let text = format!(
        r#"
[regions.eu]
store = "file://{store}"
[devices]
"cam-1" = {{ region = "eu", account = "acct-1", minor = false }}
[paths]
quarantine = "{q}"
audit = "{a}"
work = "{w}"
"#,
        store = store.display(),
        q = dir.join("quarantine").display(),
        a = dir.join("audit.jsonl").display(),
        w = dir.join("work").display(),
    );
    let p = dir.join("obscura.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn ingest(cfg: &Path, input: &Path) -> std::process::Output {
    common::bin()
        .args(["ingest", "--device", "cam-1", "--config"])
        .arg(cfg)
        .arg(input)
        .output()
        .unwrap()
}

fn seed() -> PathBuf {
    common::repo().join("tests/corpus/seeds/speech.wav")
}

#[test]
fn a_store_whose_base_folder_is_a_symlink_keeps_its_clips_inside_the_target() {
    let dir = common::scratch();
    let real = dir.path().join("disk/store");
    std::fs::create_dir_all(&real).unwrap();
    let link = dir.path().join("store-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let cfg = config(dir.path(), &link);
    let o = ingest(&cfg, &seed());
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let files = common::files_under(&real);
    assert_eq!(
        files.len(),
        2,
        "media + sidecar in the link's target: {files:?}"
    );
    assert!(files.iter().all(|f| f.starts_with("clips/")));
    // Erase through the link removes them.
    let o = common::bin()
        .args(["erase", "--account", "acct-1", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    assert!(common::files_under(&real).is_empty());
}

/// A symbolic link planted inside a folder store (at `clips`, or at the clip's own folder,
/// whose name is predictable) made the clip's media and sidecar land outside the store.
#[test]
fn regression_symlink_planted_in_a_store_let_a_clip_escape() {
    let input_sha = obscura::fsutil::sha256_file(&seed()).unwrap();
    let clip = obscura::route::clip_id(&input_sha, "cam-1");
    for planted in ["clips".to_string(), format!("clips/{clip}")] {
        let dir = common::scratch();
        let store = dir.path().join("store");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let at = store.join(&planted);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&outside, &at).unwrap();
        let cfg = config(dir.path(), &store);
        let o = ingest(&cfg, &seed());
        assert_ne!(o.status.code(), Some(0), "{planted}: ingest must refuse");
        assert!(
            common::stderr(&o).contains("symbolic link"),
            "{planted}: {}",
            common::stderr(&o)
        );
        assert!(
            common::files_under(&outside).is_empty(),
            "{planted}: escaped into {:?}",
            common::files_under(&outside)
        );
        // The input is quarantined, not lost.
        assert!(
            common::files_under(&dir.path().join("quarantine"))
                .iter()
                .any(|f| f.ends_with(".reason.json"))
        );
    }
}

/// A file or folder name with a line break printed raw could end a line of output or of the
/// log and forge the next one ("[9/9] ok …", a fake WARN). Every line is escaped now: the
/// per-file lines of `batch` and the text log's field values.
#[test]
fn regression_issue_6_a_name_with_a_line_break_cannot_forge_a_line_of_output() {
    let dir = common::scratch();
    // The `/` of "[9/9]" is the path's separator: a folder "\n[9" holding "9] ok …".
    let forged = "9] ok forged.mp4 (1 frames, 0.0 s)\n2026-01-01T00:00:00Z  WARN forged";
    let with_file = dir.path().join("in");
    std::fs::create_dir_all(with_file.join("cam\n[9")).unwrap();
    std::fs::write(
        with_file.join(format!("cam\n[9/{forged}.mp4")),
        b"not media",
    )
    .unwrap();
    let empty = dir.path().join(format!("day\n[9/{forged}"));
    std::fs::create_dir_all(&empty).unwrap();
    for (input, what) in [(&with_file, "per-file line"), (&empty, "log line")] {
        let o = common::bin()
            .args(["batch"])
            .arg(input)
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .unwrap();
        let err = common::stderr(&o);
        assert!(
            err.contains("\\n[9/9] ok forged.mp4"),
            "{what}: the name is shown, escaped: {err}"
        );
        for line in err.lines() {
            assert!(
                !line.starts_with("[9/9]") && !line.starts_with("2026-01-01T00:00:00Z"),
                "{what}: forged line {line:?} in {err}"
            );
        }
    }
}
