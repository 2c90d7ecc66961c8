//! `[fallback]`: the deadlines by which a message must be confirmed delivered, per message
//! key, before the patient's next usable channel carries it too, and which channels can
//! confirm at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::Channel;

/// `[fallback]` settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallbackConfig {
    /// How often each dispatching instance looks for messages past their deadline, in
    /// milliseconds.
    pub tick_ms: u64,
    /// Messages handled per look.
    pub batch: usize,
    /// Channels whose delivery can be confirmed. A message on any other channel never falls
    /// back: a channel silent by nature would otherwise always send a second copy.
    pub confirming_channels: Vec<Channel>,
    /// Seconds from the moment a provider took a message until it must be confirmed, per
    /// message key. A key ending in `.*` covers every key that starts with what precedes
    /// the `*`; an exact key wins over it. Keys not listed never fall back.
    pub deadline_seconds: BTreeMap<String, u64>,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            tick_ms: 5000,
            batch: 500,
            confirming_channels: vec![Channel::Sms, Channel::Push, Channel::NhsApp],
            deadline_seconds: BTreeMap::new(),
        }
    }
}

impl FallbackConfig {
    /// The key and reason of the first setting that makes no sense.
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(100..=600_000).contains(&self.tick_ms) {
            return Err((
                "fallback.tick_ms".into(),
                "must be from 100 to 600000".into(),
            ));
        }
        if !(1..=10_000).contains(&self.batch) {
            return Err(("fallback.batch".into(), "must be from 1 to 10000".into()));
        }
        for (key, seconds) in &self.deadline_seconds {
            let name = format!("fallback.deadline_seconds.{key:?}");
            let stem = key.strip_suffix(".*").unwrap_or(key);
            if stem.is_empty() || stem.contains('*') {
                return Err((
                    name,
                    "must be a message key, or a key prefix followed by .*".into(),
                ));
            }
            // A week: beyond that a message is long past being news.
            if !(1..=604_800).contains(seconds) {
                return Err((name, "must be from 1 to 604800 seconds".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_must_be_keys_or_prefixes_within_a_week() {
        let mut config = FallbackConfig::default();
        assert!(config.check().is_ok());
        for (key, seconds, good) in [
            ("appointment.*", 1800, true),
            ("status.closed", 7200, true),
            ("*", 60, false),
            ("status.*.x", 60, false),
            ("status.closed", 0, false),
            ("status.closed", 604_801, false),
        ] {
            config.deadline_seconds = BTreeMap::from([(key.to_string(), seconds)]);
            assert_eq!(config.check().is_ok(), good, "{key} {seconds}");
        }
    }
}
