//! The sidecar schema is a contract: its shape (every key, with the JSON type of its value;
//! arrays by the shape of their first element) is compared with committed golden files.
//! Values are not compared (times, hashes and paths differ per run). Regenerate after an
//! intended, additive schema change with `UPDATE_GOLDEN=1 cargo test --test sidecar_golden`.

mod common;

use obscura::pipeline::{Control, Job, redact_file};
use serde_json::{Map, Value};

fn shape(v: &Value) -> Value {
    match v {
        Value::Null => Value::String("null".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::String(_) => Value::String("string".into()),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

fn check(name: &str, input: &str, out: &str) {
    let dir = common::scratch();
    let job = Job {
        input: common::sample(input),
        output: dir.path().join(out),
        sidecar: None,
    };
    let o = redact_file(&job, &common::config(), &Control::default()).unwrap();
    let got = shape(&serde_json::from_slice(&std::fs::read(&o.sidecar_path).unwrap()).unwrap());
    let golden = common::repo().join(format!("tests/golden/{name}.shape.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, serde_json::to_vec_pretty(&got).unwrap()).unwrap();
    }
    let want: Value =
        serde_json::from_slice(&std::fs::read(&golden).expect("golden file exists")).unwrap();
    assert_eq!(
        got,
        want,
        "sidecar shape of {name} changed; see {}",
        golden.display()
    );
}

#[test]
fn video_sidecar_keeps_its_shape() {
    check("video", "city_pan.mp4", "out.mp4");
}

#[test]
fn audio_only_sidecar_keeps_its_shape() {
    check("audio_only", "audio/librivox_gaps_16k.wav", "out.wav");
}

/// Fuzzing (sidecar target, CI 2026-12-02): a sidecar whose `stage_ms_per_frame.detect` was
/// written with 20 decimals (0.10111111111111111111) parsed to one float, serialized, and
/// parsed back to the next float up — serde_json's default float parser is not correctly
/// rounded for long decimals. A sidecar read back (`--resume`, ingest, the store) must mean
/// what was written: serde_json's `float_roundtrip` parser is on.
#[test]
fn regression_a_sidecar_with_a_long_decimal_changed_when_read_back() {
    let seed = std::fs::read_to_string(common::repo().join("fuzz/seeds/sidecar/speech.json"))
        .unwrap()
        .replace("\"detect\": 0.0,", "\"detect\": 0.10111111111111111111,");
    let s: obscura::types::Sidecar = serde_json::from_str(&seed).unwrap();
    let again: obscura::types::Sidecar =
        serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&s).unwrap()
    );
}
