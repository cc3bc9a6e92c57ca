//! Obscura: finds faces and voices in device video and audio, redacts them, and (in later
//! stages) classifies each clip and stores it in its region with retention metadata.
//!
//! Layout follows the pipeline: `media` (GStreamer in/out) → `detect` (models, tracker) →
//! `redact` (pixels) → `pipeline` (stages on threads, bounded channels, commit), with
//! `types` for what crosses stages, `config` for settings and `cli` for the binary.

pub mod batch;
pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod eval;
pub mod fsutil;
pub mod geom;
pub mod media;
pub mod pipeline;
pub mod redact;
pub mod route;
pub mod types;
