//! Scale-out over NATS JetStream. Nodes with inboxes or streams *publish*: each finished raw
//! clip is staged, encrypted, in its region's store (`Router::staging_put`) and a small job
//! (`Job`) is published to `<subject>.<region>` on a work-queue stream, with the clip id as
//! message id (the server drops duplicates within its window). Only after the server's ack is
//! the local input removed. Workers *pull* one job at a time from the durable consumer of each
//! region they may process (`queue.regions`: data residency), report progress while they work
//! (so `ack_wait` bounds only a silent death, not a long clip), commit the clip with
//! `Router::try_ingest`, delete the staged copy, then ack. A worker killed mid-job stops
//! reporting progress and the job is redelivered after `ack_wait`; the content-derived clip id
//! makes the second run find or overwrite the same objects, never a duplicate. Jobs that fail
//! because of their input, or for `max_deliver` deliveries, are copied to the quarantine,
//! published to `<subject>.dead.<region>` (kept by the `<stream>_DEAD` stream) and terminated.
//!
//! Owns: the NATS connection, streams and consumers, job messages. Must not touch: media or
//! the store layout (it calls the router).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::inbox::{Outcome, Work};
use super::{DaemonError, Shared};
use crate::config::{Config, QueueConfig};
use crate::route::{RouteError, Router};

/// A job message (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Staging name (the clip id).
    pub clip: String,
    /// URI of the staged (encrypted) raw clip, for people reading the queue.
    pub uri: String,
    pub region: String,
    pub device: String,
    pub recorded_at: Option<String>,
    /// sha256 of the raw clip.
    pub sha256: String,
    pub bytes: u64,
    /// The original file's extension (for the temporary file the worker decodes).
    pub ext: String,
    /// The original file name (for logs and the quarantine).
    pub name: String,
}

/// The connection shared by a node's publishers and workers.
#[derive(Clone)]
pub struct Context {
    rt: Arc<tokio::runtime::Runtime>,
    client: async_nats::Client,
    js: jetstream::Context,
    q: QueueConfig,
    regions: Vec<String>,
    stop: Arc<AtomicBool>,
}

fn qerr(e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Queue(e.to_string())
}

impl Context {
    /// Connects, and creates the work and dead-letter streams and the per-region consumers
    /// when missing.
    pub fn connect(q: &QueueConfig, cfg: &Config) -> Result<Context, DaemonError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats")
            .enable_all()
            .build()
            .map_err(qerr)?;
        let urls: Vec<String> = q.nats.split(',').map(|s| s.trim().to_string()).collect();
        let client = rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    async_nats::ConnectOptions::new()
                        .name("obscura")
                        .retry_on_initial_connect()
                        .connect(urls.clone()),
                )
                .await
            })
            .map_err(|_| DaemonError::Queue(format!("{}: no answer within 10 s", q.nats)))?
            .map_err(|e| DaemonError::Queue(format!("{}: {e}", q.nats)))?;
        let js = {
            let _in_runtime = rt.enter();
            jetstream::new(client.clone())
        };
        let regions: Vec<String> = if q.regions.is_empty() {
            cfg.regions.keys().cloned().collect()
        } else {
            q.regions.clone()
        };
        let ctx = Context {
            rt: Arc::new(rt),
            client,
            js,
            q: q.clone(),
            regions,
            stop: Arc::new(AtomicBool::new(false)),
        };
        ctx.rt.block_on(ctx.ensure_streams())?;
        Ok(ctx)
    }

    async fn ensure_streams(&self) -> Result<(), DaemonError> {
        let q = &self.q;
        self.js
            .get_or_create_stream(jetstream::stream::Config {
                name: q.stream.clone(),
                subjects: vec![format!("{}.*", q.subject)],
                retention: jetstream::stream::RetentionPolicy::WorkQueue,
                storage: jetstream::stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| DaemonError::Queue(format!("stream {}: {e}", q.stream)))?;
        self.js
            .get_or_create_stream(jetstream::stream::Config {
                name: format!("{}_DEAD", q.stream),
                subjects: vec![format!("{}.dead.*", q.subject)],
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| DaemonError::Queue(format!("stream {}_DEAD: {e}", q.stream)))?;
        Ok(())
    }

    async fn consumer(&self, region: &str) -> Result<PullConsumer, DaemonError> {
        let q = &self.q;
        let stream = self
            .js
            .get_stream(&q.stream)
            .await
            .map_err(|e| DaemonError::Queue(format!("stream {}: {e}", q.stream)))?;
        let name = format!("workers-{region}");
        stream
            .get_or_create_consumer(
                &name,
                jetstream::consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("{}.{region}", q.subject),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(q.ack_wait_secs),
                    max_deliver: q.max_deliver,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| DaemonError::Queue(format!("consumer {name}: {e}")))
    }

    /// Why the queue makes the node not ready (the broker connection is down).
    pub fn not_ready(&self) -> Option<String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            state => Some(format!("NATS {}: {state:?}", self.q.nats)),
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stages a local clip and publishes its job; removes the local input after the server's
    /// ack. The producer side of a node with inboxes or streams.
    pub fn publish_local(&self, router: &Router, w: &Work, shared: &Shared) -> Outcome {
        match self.try_publish(router, w) {
            Ok(job) => {
                shared
                    .metrics
                    .jobs_published
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(clip = %job.clip, region = %job.region, device = %job.device, "published");
                super::finish_removal(&w.path)
            }
            Err(e) => super::handle_failure(router, w, &e, shared),
        }
    }

    fn try_publish(&self, router: &Router, w: &Work) -> Result<Job, RouteError> {
        let dev = router.device(&w.device)?.clone();
        let data = std::fs::read(&w.path).map_err(|source| RouteError::Io {
            path: w.path.clone(),
            source,
        })?;
        if data.is_empty() {
            return Err(RouteError::Pipeline(crate::pipeline::PipelineError::Media(
                crate::media::MediaError::Empty {
                    path: w.path.clone(),
                },
            )));
        }
        let sha = crate::fsutil::sha256_bytes(&data);
        let clip = crate::route::clip_id(&sha, &w.device);
        let ext: String = w
            .path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .filter(|e| e.len() <= 8 && e.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or_else(|| "bin".into());
        let uri = router.staging_put(&dev.region, &clip, &data)?;
        let job = Job {
            clip: clip.clone(),
            uri,
            region: dev.region.clone(),
            device: w.device.clone(),
            recorded_at: w.recorded_at.map(|t| t.to_rfc3339()),
            sha256: sha,
            bytes: data.len() as u64,
            ext,
            name: w
                .path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        };
        let subject = format!("{}.{}", self.q.subject, dev.region);
        let payload = serde_json::to_vec(&job).map_err(|e| RouteError::Store(e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", clip.as_str());
        self.rt
            .block_on(async {
                let ack = self
                    .js
                    .publish_with_headers(subject.clone(), headers, payload.into())
                    .await?;
                tokio::time::timeout(Duration::from_secs(10), ack)
                    .await
                    .map_err(|_| {
                        async_nats::jetstream::context::PublishError::from(
                            async_nats::jetstream::context::PublishErrorKind::TimedOut,
                        )
                    })?
            })
            .map_err(|e| RouteError::Store(format!("publish to {subject}: {e}")))?;
        Ok(job)
    }
}

/// Starts one pulling worker thread.
pub fn spawn_worker(
    index: usize,
    ctx: Context,
    shared: Arc<Shared>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let router = Router::new(&shared.cfg)?;
    let consumers: Vec<(String, PullConsumer)> = ctx
        .regions
        .iter()
        .map(|r| ctx.rt.block_on(ctx.consumer(r)).map(|c| (r.clone(), c)))
        .collect::<Result<_, _>>()?;
    std::thread::Builder::new()
        .name(format!("queue-{index}"))
        .spawn(move || worker_loop(&ctx, &consumers, &router, &shared))
        .map_err(|e| DaemonError::Config(format!("thread: {e}")))
}

fn worker_loop(
    ctx: &Context,
    consumers: &[(String, PullConsumer)],
    router: &Router,
    shared: &Shared,
) {
    while !ctx.stop.load(Ordering::SeqCst) {
        let mut got = false;
        for (region, c) in consumers {
            if ctx.stop.load(Ordering::SeqCst) {
                break;
            }
            let msg = ctx.rt.block_on(async {
                let mut batch = c
                    .fetch()
                    .max_messages(1)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await
                    .ok()?;
                batch.next().await.and_then(Result::ok)
            });
            let Some(msg) = msg else { continue };
            got = true;
            shared.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
            handle_job(ctx, region, &msg, router, shared);
            shared.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if !got {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Sends a JetStream acknowledgement of `kind` for `msg`.
fn ack(ctx: &Context, msg: &jetstream::Message, kind: jetstream::AckKind) {
    let r = ctx
        .rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), msg.ack_with(kind)).await });
    if !matches!(r, Ok(Ok(()))) {
        tracing::warn!("could not acknowledge a job; it will be redelivered (harmless)");
    }
}

fn handle_job(
    ctx: &Context,
    region: &str,
    msg: &jetstream::Message,
    router: &Router,
    shared: &Shared,
) {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    if delivered > 1 {
        shared
            .metrics
            .jobs_redelivered
            .fetch_add(1, Ordering::Relaxed);
    }
    let job: Job = match serde_json::from_slice(&msg.payload) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "job message is not a job; dead-lettered");
            dead_letter(
                ctx,
                region,
                &msg.payload,
                &format!("not a job: {e}"),
                shared,
            );
            ack(ctx, msg, jetstream::AckKind::Term);
            return;
        }
    };
    let span = tracing::info_span!("job", clip = %job.clip, device = %job.device, delivered);
    let _g = span.enter();
    if job.region != region {
        dead_letter(
            ctx,
            region,
            &msg.payload,
            "job region does not match its subject",
            shared,
        );
        ack(ctx, msg, jetstream::AckKind::Term);
        return;
    }
    // Report progress while working, so a long clip is not redelivered; a dead worker stops.
    let done = Arc::new(AtomicBool::new(false));
    let every = Duration::from_secs(ctx.q.ack_wait_secs).div_f64(3.0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut last = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() >= every {
                    ack(ctx, msg, jetstream::AckKind::Progress);
                    last = Instant::now();
                }
            }
        });
        let result = run_job(router, &job, shared);
        done.store(true, Ordering::Relaxed);
        finish_job(ctx, region, msg, router, &job, delivered, result, shared);
    });
}

/// What a job's run came to.
enum JobResult {
    Committed,
    /// The clip was already stored (a redelivery after a commit).
    AlreadyStored,
    Failed(RouteError),
    /// The staged object is gone and the clip is not stored.
    StagingLost,
}

fn run_job(router: &Router, job: &Job, shared: &Shared) -> JobResult {
    let t0 = Instant::now();
    let staged = match router.staging_get(&job.region, &job.clip) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return match router.clip_stored(&job.region, &job.clip) {
                Ok(true) => JobResult::AlreadyStored,
                Ok(false) => JobResult::StagingLost,
                Err(e) => JobResult::Failed(e),
            };
        }
        Err(e) => return JobResult::Failed(e),
    };
    if crate::fsutil::sha256_bytes(&staged) != job.sha256 {
        return JobResult::Failed(RouteError::Store(format!(
            "{}: staged clip does not match its sha256",
            job.uri
        )));
    }
    let work = shared.cfg.paths.work.clone();
    let dir = match std::fs::create_dir_all(&work)
        .and_then(|_| tempfile::Builder::new().prefix("job-").tempdir_in(&work))
    {
        Ok(d) => d,
        Err(source) => return JobResult::Failed(RouteError::Io { path: work, source }),
    };
    let input = dir.path().join(format!("input.{}", job.ext));
    if let Err(source) = std::fs::write(&input, &staged) {
        return JobResult::Failed(RouteError::Io {
            path: input,
            source,
        });
    }
    drop(staged);
    let recorded = job
        .recorded_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let ctl = shared.control();
    match router.try_ingest(&input, &job.device, recorded, &ctl) {
        Ok(r) => {
            shared.record_success(&r, t0.elapsed());
            tracing::info!(
                stored = r.stored,
                seconds = t0.elapsed().as_secs_f64(),
                "job committed"
            );
            JobResult::Committed
        }
        Err(e) => {
            if let RouteError::Minor { device } = &e {
                if let Err(ae) = router.refuse_minor(&input, device) {
                    // Nothing is deleted or acknowledged before the refusal is on record.
                    return JobResult::Failed(ae);
                }
                shared.metrics.clips_refused.fetch_add(1, Ordering::Relaxed);
            } else if e.is_permanent() {
                // Quarantine a copy under the original name while the temporary file exists.
                let named = dir.path().join(sanitize_name(&job.name));
                let _ = std::fs::rename(&input, &named);
                if let Err(qe) = router.quarantine(&named, &job.device, &e) {
                    tracing::error!(error = %qe, "could not quarantine");
                    return JobResult::Failed(qe);
                }
                shared
                    .metrics
                    .clips_quarantined
                    .fetch_add(1, Ordering::Relaxed);
            }
            JobResult::Failed(e)
        }
    }
}

fn sanitize_name(n: &str) -> String {
    let s: String = n
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() { "clip".into() } else { s }
}

#[allow(clippy::too_many_arguments)]
fn finish_job(
    ctx: &Context,
    region: &str,
    msg: &jetstream::Message,
    router: &Router,
    job: &Job,
    delivered: i64,
    result: JobResult,
    shared: &Shared,
) {
    match result {
        JobResult::Committed | JobResult::AlreadyStored => {
            if matches!(result, JobResult::AlreadyStored) {
                shared
                    .metrics
                    .clips_duplicate
                    .fetch_add(1, Ordering::Relaxed);
            }
            if let Err(e) = router.staging_delete(&job.region, &job.clip) {
                tracing::warn!(error = %e, "staged copy not deleted (the retention sweep of staging/ removes it)");
            }
            ack(ctx, msg, jetstream::AckKind::Ack);
        }
        JobResult::StagingLost => {
            tracing::error!("the staged clip is gone and the clip is not stored");
            dead_letter(ctx, region, &msg.payload, "staged clip missing", shared);
            ack(ctx, msg, jetstream::AckKind::Term);
        }
        JobResult::Failed(e) if e.is_cancelled() => {
            tracing::warn!("abandoned on shutdown; redelivered to another worker");
            ack(ctx, msg, jetstream::AckKind::Nak(None));
        }
        JobResult::Failed(e) if e.is_permanent() || delivered >= ctx.q.max_deliver => {
            tracing::warn!(error = %e, delivered, "job failed for good: dead-lettered");
            dead_letter(ctx, region, &msg.payload, &e.to_string(), shared);
            if !e.is_permanent() {
                shared.record_passing_failure(&e.to_string());
            }
            let _ = router.staging_delete(&job.region, &job.clip);
            ack(ctx, msg, jetstream::AckKind::Term);
        }
        JobResult::Failed(e) => {
            tracing::warn!(error = %e, delivered, "job failed for a passing reason; retried later");
            shared.record_passing_failure(&e.to_string());
            let wait = Duration::from_secs(2u64.saturating_pow(delivered.clamp(1, 8) as u32));
            ack(ctx, msg, jetstream::AckKind::Nak(Some(wait)));
        }
    }
}

fn dead_letter(ctx: &Context, region: &str, payload: &[u8], reason: &str, shared: &Shared) {
    shared.metrics.jobs_dead.fetch_add(1, Ordering::Relaxed);
    let subject = format!("{}.dead.{region}", ctx.q.subject);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Obscura-Reason",
        reason
            .chars()
            .filter(|c| !c.is_control())
            .take(400)
            .collect::<String>()
            .as_str(),
    );
    let body = bytes::Bytes::copy_from_slice(payload);
    let r = ctx.rt.block_on(async {
        let ack = ctx
            .js
            .publish_with_headers(subject.clone(), headers, body)
            .await?;
        ack.await
    });
    if let Err(e) = r {
        tracing::error!(error = %e, subject, "dead letter not published");
    }
}
