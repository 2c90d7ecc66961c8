//! `[templates]`: what administrators may save as message wording, and the render budget.

use serde::{Deserialize, Serialize};

/// What administrators may save as message wording.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    /// Most SMS segments a template may render to with the sample values.
    pub max_sms_segments: usize,
    /// Largest part of a template (subject, text, HTML, link), in bytes.
    pub max_part_bytes: usize,
    /// Largest rendered part of a message, in bytes (render budget).
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
    /// Most loop iterations while rendering one part (render budget).
    #[serde(default = "default_max_loop_iterations")]
    pub max_loop_iterations: u64,
    /// Longest one part may take to render, in milliseconds (render budget).
    #[serde(default = "default_max_render_ms")]
    pub max_render_ms: u64,
    /// Longest one broadcast's wording may take to render in all, in seconds.
    #[serde(default = "default_max_broadcast_render_seconds")]
    pub max_broadcast_render_seconds: u64,
}

impl TemplatesConfig {
    /// The render budget's largest part, in bytes, unless `max_output_bytes` is set.
    pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024;
    /// Its most loop iterations in one part, unless `max_loop_iterations` is set.
    pub const DEFAULT_MAX_LOOP_ITERATIONS: u64 = 10_000;
    /// Its longest render of one part, unless `max_render_ms` is set.
    pub const DEFAULT_MAX_RENDER_MS: u64 = 250;
    /// Its longest render of one broadcast, unless `max_broadcast_render_seconds` is set.
    pub const DEFAULT_MAX_BROADCAST_RENDER_SECONDS: u64 = 60;
}

fn default_max_broadcast_render_seconds() -> u64 {
    TemplatesConfig::DEFAULT_MAX_BROADCAST_RENDER_SECONDS
}

fn default_max_output_bytes() -> usize {
    TemplatesConfig::DEFAULT_MAX_OUTPUT_BYTES
}

fn default_max_loop_iterations() -> u64 {
    TemplatesConfig::DEFAULT_MAX_LOOP_ITERATIONS
}

fn default_max_render_ms() -> u64 {
    TemplatesConfig::DEFAULT_MAX_RENDER_MS
}
