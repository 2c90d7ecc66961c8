//! `[schedule]`: how often every API instance looks for status changes planned ahead that
//! are due, how late one may still be posted, and the bounds on what a practice may plan.

use serde::{Deserialize, Serialize};

/// `[schedule]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// How often each API instance looks for due occurrences, in milliseconds.
    pub tick_ms: u64,
    /// An occurrence found due more than this many minutes late (every instance was down)
    /// is recorded as missed instead of posted.
    pub catch_up_minutes: u64,
    /// Active scheduled notices a practice may have at once.
    pub max_active_per_practice: u32,
    /// Dates in one list of dates.
    pub max_dates: usize,
    /// How far ahead a notice may be planned, in days (a one-off's `send_at`, a list's last
    /// date, a weekly rule's `until`).
    pub max_days_ahead: u32,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            tick_ms: 1000,
            catch_up_minutes: 60,
            max_active_per_practice: 100,
            max_dates: 366,
            max_days_ahead: 731,
        }
    }
}
