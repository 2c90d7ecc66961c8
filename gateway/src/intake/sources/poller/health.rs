//! How each source is doing, as its poller last recorded it, for the console and the API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

/// One source's state. Kept in memory by the instance that polls (the leader): another
/// instance's copy says only that it does not poll.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceHealth {
    /// The last poll that answered with a document that parsed, or with 304.
    pub last_success: Option<DateTime<Utc>>,
    /// The last failure's short reason (never the document) and when it happened; kept
    /// after a later success, so an intermittent source shows what went wrong.
    pub last_error: Option<(DateTime<Utc>, String)>,
    /// Failures since the last success; the backoff grows with it.
    pub consecutive_failures: u32,
    /// When the next poll is due; `None` while this instance does not lead.
    pub next_poll: Option<DateTime<Utc>>,
    /// Incidents in the last document delivered.
    pub incidents: usize,
}

/// Every source's [`SourceHealth`], by source name; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct SourcesHealth {
    sources: Arc<Mutex<BTreeMap<String, SourceHealth>>>,
}

impl SourcesHealth {
    /// One source's state, if there is such a source.
    pub fn get(&self, name: &str) -> Option<SourceHealth> {
        self.lock().get(name).cloned()
    }

    /// Every source's state, in name order.
    pub fn all(&self) -> Vec<(String, SourceHealth)> {
        self.lock()
            .iter()
            .map(|(name, health)| (name.clone(), health.clone()))
            .collect()
    }

    pub(super) fn update(&self, name: &str, change: impl FnOnce(&mut SourceHealth)) {
        change(self.lock().entry(name.to_string()).or_default());
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, SourceHealth>> {
        // A panic while holding the lock leaves plain data behind, still worth showing.
        self.sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
