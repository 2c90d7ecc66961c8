//! `[approval]`: how long one-time codes and proposed status changes last, and how often a
//! staff number may text commands; the approval service and the staff inbox read it.

use serde::{Deserialize, Serialize};

/// `[approval]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalConfig {
    /// How long a code texted to a staff number works, in seconds (`YES <code>`).
    pub code_seconds: u64,
    /// How long a status change a staff member texted waits for their `YES`, in seconds.
    pub staff_proposal_seconds: u64,
    /// How long a status change proposed from a status source waits for approval, in
    /// seconds; after that it expires (the incident may still be open: a newer reading of
    /// the source does not propose it again).
    pub source_proposal_seconds: u64,
    /// Text commands one staff number may send per hour; more are refused without an answer
    /// (and audited), so a stuck phone or a loop cannot run up texts.
    pub commands_per_number_per_hour: u32,
    /// How long one answer to a staff member may take to hand to an SMS provider, in seconds,
    /// before the next provider is tried.
    pub answer_timeout_seconds: u64,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        Self {
            code_seconds: 600,
            staff_proposal_seconds: 600,
            source_proposal_seconds: 86_400,
            commands_per_number_per_hour: 30,
            answer_timeout_seconds: 10,
        }
    }
}
