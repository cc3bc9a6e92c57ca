//! Suite 2 of RELIABILITY.md: a corpus of broken inputs, generated deterministically from the
//! seeds in `tests/corpus/seeds/` (made from the bundled samples, see its README), each run
//! through the real `obscura redact` binary — the path users take — with a per-input timeout.
//!
//! Every input must end (60 s, hang detection only) with an exit status of the README's
//! contract (0 or 1 for a bad input), no panic and no signal death; a failure prints exactly
//! one `obscura: error: FILE: cause` line naming the file and leaves nothing in the output
//! folder; a success (a mutation GStreamer still decodes, e.g. a bit flip in the media data)
//! leaves exactly the output and its sidecar. Outcomes are counted per mutation kind and
//! written to `target/reliability/corrupt_corpus.json`.
//!
//! CI runs every input whose index is a multiple of `OBSCURA_CORPUS_EVERY` (default 1: all);
//! `OBSCURA_CORPUS_SEED` changes the mutations (default 7).

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// SplitMix64: a small, stable generator (the corpus must not change with a crate version).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

struct Case {
    /// Mutation kind (for the outcome table).
    kind: &'static str,
    /// File name given to the input (its extension may lie on purpose).
    name: String,
    bytes: Vec<u8>,
}

/// Top-level and nested ISO-BMFF boxes: (offset, size, fourcc).
fn mp4_boxes(d: &[u8]) -> Vec<(usize, usize, [u8; 4])> {
    fn walk(d: &[u8], start: usize, end: usize, out: &mut Vec<(usize, usize, [u8; 4])>) {
        let mut i = start;
        while i + 8 <= end {
            let size = u32::from_be_bytes(d[i..i + 4].try_into().unwrap()) as usize;
            let fourcc: [u8; 4] = d[i + 4..i + 8].try_into().unwrap();
            if size < 8 || i + size > end {
                break;
            }
            out.push((i, size, fourcc));
            if matches!(&fourcc, b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl") {
                walk(d, i + 8, i + size, out);
            }
            i += size;
        }
    }
    let mut v = Vec::new();
    walk(d, 0, d.len(), &mut v);
    v
}

fn find(d: &[u8], needle: &[u8]) -> Option<usize> {
    d.windows(needle.len()).position(|w| w == needle)
}

fn set_u32_be(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn set_u32_le(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Mutations that know the format: MP4/M4A boxes, WAV/FLAC/MP3/Ogg headers, MKV/TS.
fn structural(name: &str, d: &[u8], rng: &mut Rng, out: &mut Vec<Case>) {
    let ext = name.rsplit('.').next().unwrap_or("");
    let stem = name.split('.').next().unwrap_or(name);
    let mut push = |kind: &'static str, tag: &str, bytes: Vec<u8>| {
        out.push(Case {
            kind,
            name: format!("{stem}-{tag}.{ext}"),
            bytes,
        })
    };
    match ext {
        "mp4" | "m4a" => {
            let boxes = mp4_boxes(d);
            let get = |f: &[u8; 4]| boxes.iter().find(|b| &b.2 == f).copied();
            if let Some((o, s, _)) = get(b"moov") {
                let mut v = d[..o].to_vec();
                v.extend_from_slice(&d[o + s..]);
                push("moov_removed", "nomoov", v);
                let mut v = d.to_vec();
                set_u32_be(&mut v, o, u32::MAX);
                push("huge_size", "moov-huge", v);
                let mut v = d.to_vec();
                set_u32_be(&mut v, o, 1); // 64-bit size follows: garbage, huge
                push("huge_size", "moov-size1", v);
                let mut v = d.to_vec();
                v[o + 4..o + 8].copy_from_slice(b"junk");
                push("moov_removed", "moov-renamed", v);
            }
            if let Some((o, _, _)) = get(b"mdat") {
                let mut v = d.to_vec();
                set_u32_be(&mut v, o, u32::MAX);
                push("huge_size", "mdat-huge", v);
                let mut v = d.to_vec();
                set_u32_be(&mut v, o, 0); // "to the end of the file"
                push("huge_size", "mdat-size0", v);
            }
            for f in [b"stsz", b"stco", b"stts", b"stsc", b"stss", b"ctts"] {
                for (i, (o, _, _)) in boxes.iter().filter(|b| &b.2 == f).enumerate() {
                    // Entry count (after version/flags; stsz: after sample size) set huge.
                    let at = if f == b"stsz" { o + 16 } else { o + 12 };
                    if at + 4 <= d.len() {
                        let mut v = d.to_vec();
                        set_u32_be(&mut v, at, 0x7FFF_FFFF);
                        push(
                            "huge_size",
                            &format!("{}{i}-count", String::from_utf8_lossy(f)),
                            v,
                        );
                    }
                }
            }
            for f in [b"avcC", b"esds", b"tkhd", b"mdhd", b"hdlr"] {
                if let Some(p) = find(d, f) {
                    let mut v = d.to_vec();
                    let n = 24.min(v.len() - p - 4);
                    let junk = rng.bytes(n);
                    v[p + 4..p + 4 + n].copy_from_slice(&junk);
                    push(
                        "broken_header",
                        &format!("{}-garbage", String::from_utf8_lossy(f)),
                        v,
                    );
                }
            }
            if let Some((o, s, _)) = get(b"mdat") {
                // Garbage NAL units: overwrite length-prefixed units with noise, or give a
                // unit a length that runs past the box.
                for k in 0..6 {
                    let mut v = d.to_vec();
                    let at = o + 8 + rng.below(s.saturating_sub(80));
                    let junk = rng.bytes(64);
                    v[at..at + 64].copy_from_slice(&junk);
                    push("garbage_nal", &format!("nal{k}"), v);
                }
                let mut v = d.to_vec();
                set_u32_be(&mut v, o + 8, 0x7FFF_FFF0);
                push("garbage_nal", "nal-len-huge", v);
            }
        }
        "ts" => {
            // Garbage NAL units after Annex-B start codes; broken sync bytes.
            let starts: Vec<usize> = d
                .windows(4)
                .enumerate()
                .filter(|(_, w)| *w == [0, 0, 0, 1])
                .map(|(i, _)| i + 4)
                .collect();
            for k in 0..6 {
                if starts.is_empty() {
                    break;
                }
                let at = starts[rng.below(starts.len())];
                let mut v = d.to_vec();
                let n = 48.min(v.len() - at);
                let junk = rng.bytes(n);
                v[at..at + n].copy_from_slice(&junk);
                push("garbage_nal", &format!("nal{k}"), v);
            }
            let mut v = d.to_vec();
            for i in (0..v.len()).step_by(188).take(40) {
                v[i] = 0x00;
            }
            push("broken_header", "nosync", v);
        }
        "mkv" => {
            // The Segment's size as an 8-byte vint of the largest value; a Cluster's too.
            if let Some(p) = find(d, &[0x18, 0x53, 0x80, 0x67]) {
                let mut v = d.to_vec();
                v[p + 4] = 0x01;
                for b in &mut v[p + 5..p + 12] {
                    *b = 0xFE;
                }
                push("huge_size", "segment-huge", v);
            }
            if let Some(p) = find(d, &[0x1F, 0x43, 0xB6, 0x75]) {
                let mut v = d.to_vec();
                v[p + 4] = 0x01;
                for b in &mut v[p + 5..p + 12] {
                    *b = 0xFE;
                }
                push("huge_size", "cluster-huge", v);
                let mut v = d.to_vec();
                let n = 64.min(v.len() - p - 16);
                let junk = rng.bytes(n);
                v[p + 16..p + 16 + n].copy_from_slice(&junk);
                push("garbage_nal", "cluster-garbage", v);
            }
            let mut v = d.to_vec();
            v[..4].copy_from_slice(&[0x1A, 0x45, 0xDF, 0xA4]);
            v[4] = 0x01;
            push("huge_size", "ebml-huge", v);
        }
        "wav" => {
            // RIFF/fmt/data fields: zero channels, zero rate, odd bit depths, huge sizes.
            let fmt = find(d, b"fmt ").unwrap_or(12);
            let data = find(d, b"data").unwrap_or(36);
            let fields: [(&str, usize, u32, usize); 9] = [
                ("channels0", fmt + 10, 0, 2),
                ("channels255", fmt + 10, 255, 2),
                ("rate0", fmt + 12, 0, 4),
                ("rate-huge", fmt + 12, u32::MAX, 4),
                ("bits0", fmt + 22, 0, 2),
                ("bits7", fmt + 22, 7, 2),
                ("format-x", fmt + 8, 0x1234, 2),
                ("align0", fmt + 20, 0, 2),
                ("fmtsize-huge", fmt + 4, u32::MAX, 4),
            ];
            for (tag, at, val, width) in fields {
                let mut v = d.to_vec();
                if width == 2 {
                    v[at..at + 2].copy_from_slice(&(val as u16).to_le_bytes());
                } else {
                    set_u32_le(&mut v, at, val);
                }
                push("broken_header", tag, v);
            }
            let mut v = d.to_vec();
            set_u32_le(&mut v, data + 4, u32::MAX);
            push("huge_size", "data-huge", v);
            let mut v = d.to_vec();
            set_u32_le(&mut v, 4, u32::MAX);
            push("huge_size", "riff-huge", v);
            let mut v = d.to_vec();
            set_u32_le(&mut v, data + 4, 0);
            push("broken_header", "data0", v);
            push("broken_header", "header-only", d[..data + 8].to_vec());
        }
        "flac" => {
            // STREAMINFO: sample rate / channels / bits packed at bytes 18..22 of the block.
            for (tag, at, val) in [
                ("streaminfo-zero", 8 + 10, 0u8),
                ("streaminfo-ff", 8 + 12, 0xFF),
                ("blocksize-zero", 8, 0),
                ("minframe-ff", 8 + 4, 0xFF),
            ] {
                let mut v = d.to_vec();
                for b in &mut v[at..at + 4] {
                    *b = val;
                }
                push("broken_header", tag, v);
            }
            let mut v = d.to_vec();
            v[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]); // metadata block length
            push("huge_size", "metalen-huge", v);
        }
        "mp3" => {
            // ID3 size huge (synchsafe), frame sync destroyed, frame headers garbage.
            if d.starts_with(b"ID3") {
                let mut v = d.to_vec();
                v[6..10].copy_from_slice(&[0x7F, 0x7F, 0x7F, 0x7F]);
                push("huge_size", "id3-huge", v);
            }
            let mut v = d.to_vec();
            let mut n = 0;
            for i in 0..v.len() - 1 {
                if v[i] == 0xFF && v[i + 1] & 0xE0 == 0xE0 {
                    v[i + 1] = rng.next() as u8 & 0x1F;
                    n += 1;
                }
            }
            if n > 0 {
                push("broken_header", "nosync", v);
            }
            let mut v = d.to_vec();
            for i in 0..v.len() - 4 {
                if v[i] == 0xFF && v[i + 1] & 0xE0 == 0xE0 {
                    v[i + 2] = 0xFF; // bitrate index 15, rate index 3: both invalid
                }
            }
            push("broken_header", "bad-frameheaders", v);
        }
        "opus" => {
            if let Some(p) = find(d, b"OpusHead") {
                for (tag, at, val) in [
                    ("opushead-ver", p + 8, 0xFFu8),
                    ("opushead-ch0", p + 9, 0),
                    ("opushead-family", p + 18, 0xFF),
                ] {
                    let mut v = d.to_vec();
                    v[at] = val;
                    push("broken_header", tag, v);
                }
            }
            let mut v = d.to_vec();
            let mut k = 0;
            while let Some(p) = find(&v[k..], b"OggS") {
                v[k + p + 22] ^= 0x5A; // page CRC
                k += p + 4;
            }
            push("broken_header", "ogg-crc", v);
        }
        _ => {}
    }
}

/// The whole corpus, in a fixed order.
fn corpus(seed: u64) -> Vec<Case> {
    let dir = common::repo().join("tests/corpus/seeds");
    let mut names: Vec<String> = common::listing(&dir)
        .into_iter()
        .filter(|n| !n.ends_with(".md"))
        .collect();
    names.sort();
    let mut out = vec![Case {
        kind: "zero_length",
        name: "empty.mp4".into(),
        bytes: Vec::new(),
    }];
    for (si, name) in names.iter().enumerate() {
        let d = std::fs::read(dir.join(name)).unwrap();
        let mut rng = Rng(seed ^ (si as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let ext = name.rsplit('.').next().unwrap_or("");
        let stem = name.split('.').next().unwrap_or(name);
        let mut push = |kind: &'static str, tag: String, ext: &str, bytes: Vec<u8>| {
            out.push(Case {
                kind,
                name: format!("{stem}-{tag}.{ext}"),
                bytes,
            })
        };
        // Truncations: the first bytes, every 1/16 of the file, the last bytes.
        for cut in [1usize, 4, 8, 12, 16, 32, 100, 512] {
            push("truncated", format!("cut{cut}"), ext, d[..cut].to_vec());
        }
        for k in 1..16 {
            let cut = d.len() * k / 16;
            push("truncated", format!("cut{k}of16"), ext, d[..cut].to_vec());
        }
        for back in [1usize, 7, 100] {
            let cut = d.len() - back;
            push(
                "truncated",
                format!("cutlast{back}"),
                ext,
                d[..cut].to_vec(),
            );
        }
        // Single bit flips anywhere; in the first 256 bytes (headers) more often.
        for k in 0..20 {
            let mut v = d.clone();
            let at = if k % 2 == 0 {
                rng.below(256.min(v.len()))
            } else {
                rng.below(v.len())
            };
            v[at] ^= 1 << rng.below(8);
            push("bit_flip", format!("flip{k}"), ext, v);
        }
        // Bursts: 32 random bytes flipped.
        for k in 0..4 {
            let mut v = d.clone();
            for _ in 0..32 {
                let at = rng.below(v.len());
                v[at] ^= 1 << rng.below(8);
            }
            push("bit_flip", format!("burst{k}"), ext, v);
        }
        // The header kept, the rest noise; noise with the header's first bytes.
        let mut v = d[..64].to_vec();
        v.extend(rng.bytes(d.len() - 64));
        push("garbage", "tailnoise".into(), ext, v);
        let mut v = d[..8].to_vec();
        v.extend(rng.bytes(4096));
        push("garbage", "headnoise".into(), ext, v);
        // Wrong extension: intact, and cut in half.
        let wrong = if matches!(ext, "mp4" | "mkv" | "ts") {
            "wav"
        } else {
            "mp4"
        };
        push("wrong_extension", "intact".into(), wrong, d.clone());
        push(
            "wrong_extension",
            "half".into(),
            wrong,
            d[..d.len() / 2].to_vec(),
        );
        structural(name, &d, &mut rng, &mut out);
    }
    out
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Tally {
    inputs: u64,
    ok: u64,
    failed: BTreeMap<String, u64>,
}

fn run_corpus(every: usize) {
    let seed: u64 = std::env::var("OBSCURA_CORPUS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let timeout = Duration::from_secs(60);
    let cases = corpus(seed);
    let work = common::scratch();
    // A stall ends a run after limits.stall_secs (60 s by default); 10 s keeps the suite
    // short, and the hang detection above stays well beyond it.
    let cfg = work.path().join("obscura.toml");
    std::fs::write(&cfg, "[limits]\nstall_secs = 10\n").unwrap();
    let inputs = work.path().join("in");
    std::fs::create_dir_all(&inputs).unwrap();
    let mut by_kind: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut violations: Vec<String> = Vec::new();
    let mut slowest = (0.0f64, String::new());
    let mut outcomes: Vec<serde_json::Value> = Vec::new();
    let started = Instant::now();
    for (i, case) in cases.iter().enumerate() {
        if i % every != 0 {
            continue;
        }
        let input = inputs.join(&case.name);
        std::fs::write(&input, &case.bytes).unwrap();
        let out_dir = work.path().join(format!("out{i}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let ext = if case.name.ends_with(".wav") || case.name.ends_with(".flac") {
            // An audio-only input keeps its own family; video would be refused in a WAV.
            "out"
        } else {
            "mp4"
        };
        let output = out_dir.join(format!("redacted.{ext}"));
        let t = Instant::now();
        let mut child = common::bin()
            .args(["redact", "--json", "--no-progress", "--config"])
            .arg(&cfg)
            .arg("-o")
            .arg(&output)
            .arg(&input)
            .env_remove("RUST_LOG")
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("obscura runs");
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if t.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let o = child.wait_with_output().unwrap();
        let secs = t.elapsed().as_secs_f64();
        if secs > slowest.0 {
            slowest = (secs, case.name.clone());
        }
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        let stdout: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
        outcomes.push(serde_json::json!({
            "input": case.name,
            "kind": case.kind,
            "exit": status.and_then(|s| s.code()),
            "class": stdout["class"].as_str().unwrap_or(if status.is_none() { "hang" } else { "ok" }),
            "secs": (secs * 100.0).round() / 100.0,
        }));
        let tally = by_kind.entry(case.kind).or_default();
        tally.inputs += 1;
        let mut bad =
            |why: String| violations.push(format!("{} [{}]: {why}", case.name, case.kind));
        let Some(status) = status else {
            bad(format!("no end within {} s (hang)", timeout.as_secs()));
            *tally.failed.entry("hang".into()).or_default() += 1;
            continue;
        };
        let left = common::listing(&out_dir);
        if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
            bad(format!("panic text on stderr: {stderr}"));
        }
        match status.code() {
            None => bad(format!("killed by a signal: {status:?}; stderr: {stderr}")),
            Some(0) => {
                tally.ok += 1;
                let want = vec![format!("redacted.{ext}"), format!("redacted.{ext}.json")];
                if left != want {
                    bad(format!(
                        "success should leave output + sidecar, found {left:?}"
                    ));
                }
                if stdout["status"] != "ok" {
                    bad(format!("exit 0 but --json says {stdout}"));
                }
            }
            Some(1) => {
                let class = stdout["class"]
                    .as_str()
                    .unwrap_or("unclassified")
                    .to_string();
                *tally.failed.entry(class.clone()).or_default() += 1;
                if class == "unclassified" || class == "internal" {
                    bad(format!("error not classified ({class}): {stdout}"));
                }
                if !left.is_empty() {
                    bad(format!("failure left files behind: {left:?}"));
                }
                let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
                if lines.len() != 1 || !lines[0].starts_with("obscura: error: ") {
                    bad(format!("stderr should be one error line, got: {stderr:?}"));
                } else if !lines[0].contains(&case.name) {
                    bad(format!(
                        "the error line does not name the file: {}",
                        lines[0]
                    ));
                }
            }
            Some(c) => bad(format!(
                "exit status {c} is not in the contract for a bad input; stderr: {stderr}"
            )),
        }
        // No temporary file anywhere it could have been written.
        for dir in [&out_dir, &inputs] {
            for n in common::listing(dir) {
                if n.contains(".obscura-tmp-") {
                    bad(format!("temporary file left: {}", dir.join(n).display()));
                }
            }
        }
        let _ = std::fs::remove_file(&input);
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    let total: u64 = by_kind.values().map(|t| t.inputs).sum();
    let ok: u64 = by_kind.values().map(|t| t.ok).sum();
    let report = serde_json::json!({
        "seed": seed,
        "every": every,
        "corpus_size": cases.len(),
        "inputs_run": total,
        "succeeded": ok,
        "failed": total - ok,
        "violations": violations,
        "by_kind": by_kind,
        "wall_s": started.elapsed().as_secs_f64(),
        "slowest": {"input": slowest.1, "secs": slowest.0},
        "outcomes": outcomes,
    });
    let dir = common::repo().join("target/reliability");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join("corrupt_corpus.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    );
    let mut summary = report.clone();
    summary["outcomes"] = serde_json::json!("(in target/reliability/corrupt_corpus.json)");
    eprintln!("{}", serde_json::to_string_pretty(&summary).unwrap());
    assert!(
        total >= (cases.len() / every) as u64,
        "ran {total} of {} inputs",
        cases.len()
    );
    assert!(
        violations.is_empty(),
        "{} of {total} inputs broke the contract:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn the_corpus_has_at_least_500_inputs_of_every_kind() {
    let cases = corpus(7);
    assert!(cases.len() >= 500, "only {} inputs", cases.len());
    let kinds: std::collections::BTreeSet<&str> = cases.iter().map(|c| c.kind).collect();
    for k in [
        "truncated",
        "bit_flip",
        "zero_length",
        "moov_removed",
        "garbage_nal",
        "wrong_extension",
        "broken_header",
        "huge_size",
        "garbage",
    ] {
        assert!(kinds.contains(k), "no {k} inputs");
    }
    // Deterministic: the same seed gives the same corpus.
    let again = corpus(7);
    assert!(
        cases
            .iter()
            .zip(&again)
            .all(|(a, b)| a.name == b.name && a.bytes == b.bytes)
    );
}

/// Every broken input ends cleanly (CI: `OBSCURA_CORPUS_EVERY` thins the corpus).
#[test]
fn corrupt_inputs_end_with_a_classified_error_and_leave_nothing() {
    let every = std::env::var("OBSCURA_CORPUS_EVERY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    run_corpus(every);
}
