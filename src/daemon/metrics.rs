//! The daemon's Prometheus metrics: a small fixed registry rendered as the text exposition
//! format (no dependency; every name is listed in the README).
//!
//! Owns: counter, gauge and histogram values and their rendering. Must not touch: anything
//! else — the other daemon parts record into it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Bucket bounds (seconds) of the latency histograms.
const BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Per-stream state shown as `obscura_stream_*{device}`. Times are monotonic (`Instant`).
#[derive(Debug, Clone)]
pub struct StreamState {
    pub up: bool,
    pub reconnects: u64,
    pub segments: u64,
    pub stalls: u64,
    /// Teardowns of a connection's pipeline that did not finish in time (left behind).
    pub stuck_teardowns: u64,
    /// When the stream was first known to the metrics (the daemon's start): the ages below
    /// count from here until there is a first time.
    pub since: Instant,
    /// The last video buffer received (any connection).
    pub last_data: Option<Instant>,
    /// The last segment committed to the daemon's own inbox.
    pub last_segment: Option<Instant>,
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState {
            up: false,
            reconnects: 0,
            segments: 0,
            stalls: 0,
            stuck_teardowns: 0,
            since: Instant::now(),
            last_data: None,
            last_segment: None,
        }
    }
}

impl StreamState {
    /// How long the stream has gone without video at `now` (since `since` if it never had any).
    pub fn data_age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_data.unwrap_or(self.since))
    }

    /// How long the stream has gone without a committed segment at `now` (since `since` if
    /// none was ever committed).
    pub fn segment_age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_segment.unwrap_or(self.since))
    }
}

/// Everything the daemon counts. Shared by reference (`Arc<Metrics>`).
#[derive(Debug, Default)]
pub struct Metrics {
    pub clips_processed: AtomicU64,
    /// Failed for a passing reason; the input is kept and retried.
    pub clips_failed: AtomicU64,
    pub clips_quarantined: AtomicU64,
    /// A minor's clip with personal data: refused and deleted (nothing kept).
    pub clips_refused: AtomicU64,
    /// Already stored (re-delivered or re-dropped input): nothing written.
    pub clips_duplicate: AtomicU64,
    pub frames: AtomicU64,
    pub faces: AtomicU64,
    /// Speech seconds, in milliseconds (rendered as seconds).
    pub speech_ms: AtomicU64,
    /// Clips waiting on disk (stable, not yet taken).
    pub queue_depth: AtomicI64,
    pub in_flight: AtomicI64,
    /// Decoded-frame memory kept for the next clip (`media::frame_memory`), and what an idle
    /// daemon has given back.
    pub frame_memory_idle_bytes: AtomicU64,
    pub frame_memory_released_bytes: AtomicU64,
    /// Failures to write because a disk or store was full.
    pub no_space: AtomicU64,
    pub jobs_published: AtomicU64,
    pub jobs_dead: AtomicU64,
    pub jobs_redelivered: AtomicU64,
    stages: Mutex<BTreeMap<&'static str, Histogram>>,
    pub streams: Mutex<BTreeMap<String, StreamState>>,
    pub models: Mutex<BTreeMap<String, bool>>,
}

impl Metrics {
    pub fn observe_stage(&self, stage: &'static str, seconds: f64) {
        if let Ok(mut m) = self.stages.lock() {
            m.entry(stage).or_default().observe(seconds);
        }
    }

    pub fn stream(&self, device: &str, f: impl FnOnce(&mut StreamState)) {
        if let Ok(mut m) = self.streams.lock() {
            f(m.entry(device.to_string()).or_default());
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, ready: bool) -> String {
        let mut o = String::with_capacity(4096);
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "# HELP obscura_clips_total Clips finished, by result.\n# TYPE obscura_clips_total counter"
        );
        for (result, v) in [
            ("processed", g(&self.clips_processed)),
            ("failed", g(&self.clips_failed)),
            ("quarantined", g(&self.clips_quarantined)),
            ("refused_minor", g(&self.clips_refused)),
            ("duplicate", g(&self.clips_duplicate)),
        ] {
            let _ = writeln!(o, "obscura_clips_total{{result=\"{result}\"}} {v}");
        }
        let mut counter = |name: &str, help: &str, v: String| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "obscura_frames_total",
            "Video frames processed.",
            g(&self.frames).to_string(),
        );
        counter(
            "obscura_faces_total",
            "Face tracks found and redacted.",
            g(&self.faces).to_string(),
        );
        counter(
            "obscura_speech_seconds_total",
            "Seconds of speech found and redacted.",
            format!("{:.3}", g(&self.speech_ms) as f64 / 1000.0),
        );
        counter(
            "obscura_no_space_total",
            "Writes that failed because a disk or store was full.",
            g(&self.no_space).to_string(),
        );
        counter(
            "obscura_jobs_published_total",
            "Clips handed to the JetStream work queue.",
            g(&self.jobs_published).to_string(),
        );
        counter(
            "obscura_jobs_dead_total",
            "Jobs sent to the dead-letter subject.",
            g(&self.jobs_dead).to_string(),
        );
        counter(
            "obscura_jobs_redelivered_total",
            "Jobs received again after a worker failed to ack them.",
            g(&self.jobs_redelivered).to_string(),
        );
        let _ = writeln!(
            o,
            "# HELP obscura_queue_depth Clips waiting on disk.\n# TYPE obscura_queue_depth gauge\nobscura_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed).max(0)
        );
        let _ = writeln!(
            o,
            "# HELP obscura_clips_in_flight Clips being processed now.\n# TYPE obscura_clips_in_flight gauge\nobscura_clips_in_flight {}",
            self.in_flight.load(Ordering::Relaxed).max(0)
        );
        let _ = writeln!(
            o,
            "# HELP obscura_frame_memory_idle_bytes Decoded-frame memory kept for the next clip.\n# TYPE obscura_frame_memory_idle_bytes gauge\nobscura_frame_memory_idle_bytes {}",
            g(&self.frame_memory_idle_bytes)
        );
        let _ = writeln!(
            o,
            "# HELP obscura_frame_memory_released_bytes_total Decoded-frame memory given back while idle.\n# TYPE obscura_frame_memory_released_bytes_total counter\nobscura_frame_memory_released_bytes_total {}",
            g(&self.frame_memory_released_bytes)
        );
        let _ = writeln!(
            o,
            "# HELP obscura_ready 1 when /readyz answers ready.\n# TYPE obscura_ready gauge\nobscura_ready {}",
            u8::from(ready)
        );
        if let Ok(m) = self.models.lock() {
            let _ = writeln!(
                o,
                "# HELP obscura_model_loaded 1 when the model file is present and its sha256 matches.\n# TYPE obscura_model_loaded gauge"
            );
            for (name, ok) in m.iter() {
                let _ = writeln!(
                    o,
                    "obscura_model_loaded{{model=\"{name}\"}} {}",
                    u8::from(*ok)
                );
            }
        }
        if let Ok(m) = self.streams.lock() {
            let _ = writeln!(
                o,
                "# HELP obscura_stream_up 1 while the camera's stream delivers data.\n# TYPE obscura_stream_up gauge"
            );
            for (d, s) in m.iter() {
                let _ = writeln!(o, "obscura_stream_up{{device=\"{d}\"}} {}", u8::from(s.up));
            }
            let now = Instant::now();
            for (name, help, age) in [
                (
                    "obscura_stream_seconds_since_last_segment",
                    "Seconds since the stream's last segment was recorded (committed for processing); since the daemon started if none was.",
                    StreamState::segment_age as fn(&StreamState, Instant) -> Duration,
                ),
                (
                    "obscura_stream_seconds_since_data",
                    "Seconds since the stream last delivered video; since the daemon started if it never did.",
                    StreamState::data_age,
                ),
            ] {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
                for (d, s) in m.iter() {
                    let _ = writeln!(
                        o,
                        "{name}{{device=\"{d}\"}} {:.3}",
                        age(s, now).as_secs_f64()
                    );
                }
            }
            for (name, help, pick) in [
                (
                    "obscura_stream_reconnects_total",
                    "Reconnection attempts.",
                    (|s: &StreamState| s.reconnects) as fn(&StreamState) -> u64,
                ),
                (
                    "obscura_stream_segments_total",
                    "Clips cut from the stream.",
                    |s: &StreamState| s.segments,
                ),
                (
                    "obscura_stream_stalls_total",
                    "Times the stream delivered nothing for stall_secs.",
                    |s: &StreamState| s.stalls,
                ),
                (
                    "obscura_stream_stuck_teardowns_total",
                    "Connections whose pipeline did not stop within the teardown limit (left behind; a new one was started).",
                    |s: &StreamState| s.stuck_teardowns,
                ),
            ] {
                let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
                for (d, s) in m.iter() {
                    let _ = writeln!(o, "{name}{{device=\"{d}\"}} {}", pick(s));
                }
            }
        }
        if let Ok(m) = self.stages.lock() {
            let _ = writeln!(
                o,
                "# HELP obscura_stage_seconds Time per clip spent in each stage.\n# TYPE obscura_stage_seconds histogram"
            );
            for (stage, h) in m.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        o,
                        "obscura_stage_seconds_bucket{{stage=\"{stage}\",le=\"{b}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    o,
                    "obscura_stage_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}\nobscura_stage_seconds_sum{{stage=\"{stage}\"}} {:.6}\nobscura_stage_seconds_count{{stage=\"{stage}\"}} {}",
                    h.count, h.sum, h.count
                );
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_render() {
        let m = Metrics::default();
        m.observe_stage("detect", 0.07);
        m.observe_stage("detect", 2.0);
        m.clips_processed.fetch_add(3, Ordering::Relaxed);
        m.stream("cam-1", |s| s.up = true);
        let t = m.render(true);
        assert!(t.contains("obscura_clips_total{result=\"processed\"} 3"));
        assert!(t.contains("obscura_stage_seconds_bucket{stage=\"detect\",le=\"0.05\"} 0"));
        assert!(t.contains("obscura_stage_seconds_bucket{stage=\"detect\",le=\"0.1\"} 1"));
        assert!(t.contains("obscura_stage_seconds_bucket{stage=\"detect\",le=\"2.5\"} 2"));
        assert!(t.contains("obscura_stage_seconds_count{stage=\"detect\"} 2"));
        assert!(t.contains("obscura_stream_up{device=\"cam-1\"} 1"));
        assert!(t.contains("obscura_ready 1"));
    }

    #[test]
    fn stream_ages_count_from_the_last_event_or_from_the_start() {
        let t0 = Instant::now();
        let s = StreamState {
            since: t0,
            ..StreamState::default()
        };
        let later = t0 + Duration::from_secs(90);
        assert_eq!(s.data_age(later), Duration::from_secs(90), "never any data");
        assert_eq!(s.segment_age(later), Duration::from_secs(90));
        let s = StreamState {
            last_data: Some(t0 + Duration::from_secs(80)),
            last_segment: Some(t0 + Duration::from_secs(30)),
            ..s
        };
        assert_eq!(s.data_age(later), Duration::from_secs(10));
        assert_eq!(s.segment_age(later), Duration::from_secs(60));
        // A time before the event (clock read earlier by another thread) is an age of 0.
        assert_eq!(s.data_age(t0), Duration::ZERO);
        let m = Metrics::default();
        m.stream("cam-1", |st| st.last_segment = Some(Instant::now()));
        let text = m.render(true);
        let sample = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}{{device=\"cam-1\"}} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
        };
        assert!(sample("obscura_stream_seconds_since_last_segment") < 60.0);
        assert!(sample("obscura_stream_seconds_since_data") >= 0.0);
        assert!(text.contains("# TYPE obscura_stream_seconds_since_data gauge"));
    }
}
