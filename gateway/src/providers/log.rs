//! The `log` provider: appends each message as one JSON line to a file. For demos and tests.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{Accepted, Outgoing, Provider, SendError, SharedFiles};
use crate::config::ProviderConfig;
use crate::domain::Channel;

/// Writes messages to a JSON-lines file instead of sending them.
pub struct LogProvider {
    name: String,
    channel: Channel,
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

/// The `log` kind's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSettings {
    /// The JSON-lines file messages are appended to.
    path: PathBuf,
}

impl LogProvider {
    /// Checks the config names a file.
    pub fn check_config(config: &ProviderConfig) -> Result<(), String> {
        let settings: LogSettings = config.settings()?;
        if settings.path.as_os_str().is_empty() {
            return Err("kind \"log\" needs `path`, the file to write messages to".into());
        }
        Ok(())
    }

    /// The file this provider writes to, if its config names one.
    pub fn path_in(config: &ProviderConfig) -> Option<PathBuf> {
        config.settings::<LogSettings>().ok().map(|s| s.path)
    }

    /// Opens (creating) the file for appending.
    pub fn new(config: &ProviderConfig, files: &mut SharedFiles) -> Result<Self, String> {
        Self::check_config(config)?;
        let path = config.settings::<LogSettings>()?.path;
        let file = files
            .append(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(Self {
            name: config.name.clone(),
            channel: config.channel,
            path,
            file,
        })
    }
}

/// Who the message would be from: the practice's SMS sender for a text (`None`: the SMS
/// provider's own), its email display name for an email.
fn sender(message: &Outgoing) -> Option<&str> {
    let practice = &message.practice;
    match message.channel {
        Channel::Sms => practice.sms_sender.as_deref(),
        Channel::Email => practice
            .email_display_name
            .as_deref()
            .or(Some(practice.name.as_str()))
            .filter(|name| !name.is_empty()),
        Channel::Push | Channel::NhsApp => None,
    }
}

#[async_trait]
impl Provider for LogProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        self.channel
    }

    /// A file has no one to confirm delivery.
    fn confirms_delivery(&self) -> bool {
        false
    }

    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError> {
        let reference = format!("log-{}", message.message_id);
        let mut line = json!({
            "message_id": message.message_id,
            "provider": self.name,
            "provider_ref": reference,
            "channel": message.channel,
            "to": message.address,
            "practice": message.practice.ods_code,
            "from": sender(message),
            "subject": message.subject,
            "body": message.body,
            "unsubscribe_url": message.unsubscribe_url,
            "at": Utc::now(),
        })
        .to_string();
        line.push('\n');
        // One write of the whole line to an O_APPEND file: lines from several providers on one
        // file never interleave, and the line is in the file before the send counts as done.
        let mut file = self.file.lock().map_err(|_| SendError::Retryable {
            reason: "log file lock poisoned".into(),
            retry_after: None,
        })?;
        file.write_all(line.as_bytes())
            .map_err(|e| SendError::Retryable {
                reason: format!("cannot write {}: {e}", self.path.display()),
                retry_after: None,
            })?;
        Ok(Accepted {
            provider_ref: Some(reference),
        })
    }
}
