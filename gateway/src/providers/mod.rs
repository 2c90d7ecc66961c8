//! Providers: the plugins messages leave through, one file per kind, built from config.
//!
//! Adding a kind is one new file implementing [`Provider`] (with `check_config` and `new`),
//! declared with `mod`, plus one line in [`KINDS`].

pub mod http;
mod log;
mod nhs_notify;
mod notify;
mod smtp;
mod twilio;
mod webhook;
mod webpush;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

pub use self::log::LogProvider;
pub use self::nhs_notify::NhsNotifyProvider;
pub use self::notify::NotifyProvider;
pub use self::smtp::SmtpProvider;
pub use self::twilio::TwilioProvider;
pub use self::webhook::WebhookProvider;
pub use self::webpush::{generate_vapid_keys, WebPushProvider};

use crate::config::ProviderConfig;
use crate::domain::{Channel, Priority};
use crate::store::Practice;

/// A message handed to a provider.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Outbox row id: providers pass it on (as a reference or header) where they can.
    pub message_id: i64,
    /// The message key (`status.closed`, `appointment.moved`): NHS Notify picks its routing
    /// plan by it.
    pub template_key: String,
    /// Channel.
    pub channel: Channel,
    /// Phone number (E.164), email address or push endpoint URL.
    pub address: String,
    /// Email subject or push title.
    pub subject: Option<String>,
    /// Text (SMS text, email plain-text part, push body).
    pub body: String,
    /// Email HTML part, if the template has one.
    pub html: Option<String>,
    /// Where a push notification leads when tapped, if the template gives a link.
    pub link: Option<String>,
    /// Lane: `Urgent` maps to push `Urgency: high`; bulk email gets List-Unsubscribe headers.
    pub priority: Priority,
    /// The practice the message is from.
    pub practice: PracticeRef,
    /// One-click unsubscribe link for this recipient (bulk email only).
    pub unsubscribe_url: Option<String>,
    /// The browser's keys, for web push.
    pub push: Option<PushKeys>,
    /// Web push only: the signed, single-use token the service worker posts back when it
    /// shows the message and when it is tapped (`links::push_receipt`); `None` elsewhere,
    /// or when the gateway has no link secret.
    pub receipt_token: Option<String>,
}

/// Who a message is from.
#[derive(Debug, Clone, Default)]
pub struct PracticeRef {
    /// ODS code.
    pub ods_code: String,
    /// Name patients know it by.
    pub name: String,
    /// Where replies to email should go, if the practice has an address.
    pub reply_to: Option<String>,
    /// The sender its texts show (a sender ID or an E.164 number), for SMS providers that
    /// take one per message; `None`: the provider's configured sender.
    pub sms_sender: Option<String>,
    /// The display name its emails come from; `None`: its `name`.
    pub email_display_name: Option<String>,
}

impl PracticeRef {
    /// Who a message of `practice` is from.
    pub fn of(practice: &Practice) -> Self {
        Self {
            ods_code: practice.ods_code.to_string(),
            name: practice.name.clone(),
            reply_to: practice.email.clone(),
            sms_sender: practice
                .senders
                .sms_sender
                .as_ref()
                .map(|s| s.as_str().to_string()),
            email_display_name: practice.senders.email_display_name.clone(),
        }
    }
}

/// A push subscription's keys (RFC 8291), base64url as the browser gave them.
#[derive(Debug, Clone)]
pub struct PushKeys {
    /// The browser's P-256 public key (`keys.p256dh`).
    pub p256dh: String,
    /// The 16-byte authentication secret (`keys.auth`).
    pub auth: String,
}

/// The provider took the message.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    /// The provider's own id for it, used to match delivery receipts.
    pub provider_ref: Option<String>,
}

/// Why a provider did not take a message, classified for the retry policy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (timeout, 5xx, rate limited), no sooner than `retry_after` if given.
    #[error("retryable: {reason}")]
    Retryable {
        /// What went wrong.
        reason: String,
        /// The provider's Retry-After.
        retry_after: Option<Duration>,
    },
    /// Will fail again (rejected content, bad configuration).
    #[error("permanent: {reason}")]
    Permanent {
        /// What went wrong.
        reason: String,
    },
    /// The address cannot be reached (invalid, unsubscribed, expired subscription).
    #[error("bad recipient: {reason}")]
    BadRecipient {
        /// What went wrong.
        reason: String,
    },
}

/// A way out for messages of one channel.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured name, recorded on each message it sends.
    fn name(&self) -> &str;
    /// The channel it carries.
    fn channel(&self) -> Channel;
    /// Hands one message over.
    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError>;
    /// For a provider that reaches many independent services (web push: each endpoint's
    /// push service), the service a message to `address` goes to, as an origin
    /// (`scheme://host:port`). Its pauses and failures are then kept per origin, so one
    /// service can hold back only its own messages. `None` (the default): one service.
    fn origin(&self, address: &str) -> Option<String> {
        let _ = address;
        None
    }
    /// Whether it reports delivery (receipts, callbacks), so that a message it took and
    /// never confirmed may fall back to another channel after its deadline. Kinds that
    /// never report (`log`, `smtp`) say no: their messages never fall back.
    fn confirms_delivery(&self) -> bool {
        true
    }
}

/// A provider that could not be built from its config.
#[derive(Debug, thiserror::Error)]
#[error("provider {name}: {reason}")]
pub struct ProviderError {
    /// The provider's configured name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

/// Builds a provider of one kind from its `[[providers]]` table.
pub type BuildFn = fn(&ProviderConfig, &mut SharedFiles) -> Result<Arc<dyn Provider>, String>;

/// A provider kind: its name in config, how to check its table, how to build it.
pub struct Kind {
    /// The `kind = "..."` value.
    pub name: &'static str,
    /// Checks the kind's settings without building (or reading secrets).
    pub check: fn(&ProviderConfig) -> Result<(), String>,
    /// Builds a provider from its table.
    pub build: BuildFn,
}

/// Every provider kind. A new kind is one file and one line here.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "log",
        check: LogProvider::check_config,
        build: |c, files| Ok(Arc::new(LogProvider::new(c, files)?)),
    },
    Kind {
        name: "twilio",
        check: TwilioProvider::check_config,
        build: |c, _| Ok(Arc::new(TwilioProvider::new(c)?)),
    },
    Kind {
        name: "notify",
        check: NotifyProvider::check_config,
        build: |c, _| Ok(Arc::new(NotifyProvider::new(c)?)),
    },
    Kind {
        name: "nhs_notify",
        check: NhsNotifyProvider::check_config,
        build: |c, _| Ok(Arc::new(NhsNotifyProvider::new(c)?)),
    },
    Kind {
        name: "webhook",
        check: WebhookProvider::check_config,
        build: |c, _| Ok(Arc::new(WebhookProvider::new(c)?)),
    },
    Kind {
        name: "smtp",
        check: SmtpProvider::check_config,
        build: |c, _| Ok(Arc::new(SmtpProvider::new(c)?)),
    },
    Kind {
        name: "webpush",
        check: WebPushProvider::check_config,
        build: |c, _| Ok(Arc::new(WebPushProvider::new(c)?)),
    },
];

fn kind(name: &str) -> Result<&'static Kind, String> {
    KINDS.iter().find(|k| k.name == name).ok_or_else(|| {
        let known: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        format!(
            "kind {name:?} is not a provider kind (known: {})",
            known.join(", ")
        )
    })
}

/// Checks one `[[providers]]` table without building it (used when loading config).
pub fn check_config(config: &ProviderConfig) -> Result<(), String> {
    (kind(&config.kind)?.check)(config)
}

/// The providers of every channel, in configured order.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    by_channel: HashMap<Channel, Vec<Arc<dyn Provider>>>,
}

impl ProviderRegistry {
    /// Builds every configured provider.
    pub fn from_config(configs: &[ProviderConfig]) -> Result<Self, ProviderError> {
        let mut registry = Self::default();
        let mut files = SharedFiles::default();
        for config in configs {
            let provider = build(config, &mut files)?;
            registry.add(provider);
        }
        Ok(registry)
    }

    /// Builds every configured provider with the gateway-wide settings they share:
    /// `webpush` providers also allow `[push] allowed_networks` besides their own.
    pub fn for_gateway(config: &crate::config::Config) -> Result<Self, ProviderError> {
        let configs: Vec<ProviderConfig> = config
            .providers
            .iter()
            .map(|provider| with_push_networks(provider, &config.push.allowed_networks))
            .collect();
        Self::from_config(&configs)
    }

    /// Adds a provider after those already serving its channel.
    pub fn add(&mut self, provider: Arc<dyn Provider>) {
        self.by_channel
            .entry(provider.channel())
            .or_default()
            .push(provider);
    }

    /// The providers of a channel, first choice first.
    pub fn for_channel(&self, channel: Channel) -> &[Arc<dyn Provider>] {
        self.by_channel
            .get(&channel)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// A `webpush` provider's table with `networks` added to its own `allowed_networks`; any
/// other provider's unchanged.
fn with_push_networks(provider: &ProviderConfig, networks: &[String]) -> ProviderConfig {
    let mut provider = provider.clone();
    if provider.kind == "webpush" && !networks.is_empty() {
        let global = networks.iter().cloned().map(serde_json::Value::String);
        match provider.settings.get_mut("allowed_networks") {
            Some(serde_json::Value::Array(own)) => own.extend(global),
            // A mistyped value is left for the kind to refuse by name.
            Some(_) => {}
            None => {
                provider.settings.insert(
                    "allowed_networks".into(),
                    serde_json::Value::Array(global.collect()),
                );
            }
        }
    }
    provider
}

fn build(
    config: &ProviderConfig,
    files: &mut SharedFiles,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let error = |reason: String| ProviderError {
        name: config.name.clone(),
        reason,
    };
    let kind = kind(&config.kind).map_err(error)?;
    (kind.check)(config).map_err(error)?;
    (kind.build)(config, files).map_err(error)
}

/// Open files shared by providers that write to the same path, so lines never interleave.
#[derive(Default)]
pub struct SharedFiles {
    open: HashMap<PathBuf, Arc<Mutex<std::fs::File>>>,
}

impl SharedFiles {
    /// The append handle for `path`, opened (with its folder) the first time.
    pub fn append(&mut self, path: &PathBuf) -> std::io::Result<Arc<Mutex<std::fs::File>>> {
        if let Some(file) = self.open.get(path) {
            return Ok(file.clone());
        }
        if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let file = Arc::new(Mutex::new(file));
        self.open.insert(path.clone(), file.clone());
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(kind: &str, settings: serde_json::Value) -> ProviderConfig {
        ProviderConfig {
            name: "p".into(),
            kind: kind.into(),
            channel: Channel::Push,
            rate: None,
            burst: None,
            price_pence: None,
            settings: settings.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn push_providers_add_the_gateway_networks_to_their_own() {
        let networks = ["10.0.0.0/8".to_string()];
        let own = provider(
            "webpush",
            serde_json::json!({ "allowed_networks": ["fd00::/8"] }),
        );
        assert_eq!(
            with_push_networks(&own, &networks).settings["allowed_networks"],
            serde_json::json!(["fd00::/8", "10.0.0.0/8"])
        );
        let none = provider("webpush", serde_json::json!({}));
        assert_eq!(
            with_push_networks(&none, &networks).settings["allowed_networks"],
            serde_json::json!(["10.0.0.0/8"])
        );
        let other = provider("webhook", serde_json::json!({}));
        assert!(with_push_networks(&other, &networks).settings.is_empty());
        assert!(with_push_networks(&none, &[]).settings.is_empty());
    }
}
