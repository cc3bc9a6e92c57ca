//! Redaction of personal information in raw media: faces in video frames (`video`) and
//! voices in audio samples (`audio`).
//!
//! Owns: what happens to pixels (and, later, samples) inside regions that detection found.
//! Must not touch: decoding, detection, or files.

pub mod audio;
pub mod video;
