//! The `nhs_notify` provider: the NHS App channel through NHS Notify's Communications
//! Manager API (`POST /comms/v1/message-batches`, `/comms/v1/messages`).
//!
//! Patients are addressed by NHS number, the practice by its ODS code; our rendered
//! wording goes as the `body` personalisation of a free-text routing plan, chosen per
//! message key. Access is the NHS England API platform's application-restricted kind
//! (see `auth`); messages handed over together leave in batches (see `batch`); answers
//! map to our error classes (see `answer`). Delivery is reported later by signed
//! callbacks (`/api/v1/receipts/nhs-notify`).

mod answer;
pub mod auth;
mod batch;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use self::answer::{read_bounded, ANSWER_LIMIT};
use self::auth::{random_uuid, read_private_key, Credentials, Tokens};
use self::batch::{Item, Limits, Pending, Post, MAX_BYTES, MAX_MESSAGES};
use super::http::check_http_url;
use super::{http, Accepted, Outgoing, Provider, SendError};
use crate::config::ProviderConfig;
use crate::domain::Channel;

/// The JSON:API media type NHS Notify speaks.
pub const JSON_API: &str = "application/vnd.api+json";

/// NHS Notify's limit on an NHS App message (characters).
const NHS_APP_MAX_CHARS: usize = 5_000;

/// Messages waiting to join a request, at most, before senders wait for room.
const WAITING: usize = 10_000;

/// The `nhs_notify` kind's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NhsNotifySettings {
    /// API root: `https://api.service.nhs.uk` (live), `https://int.api.service.nhs.uk`
    /// (integration); tests point it at a loopback peer.
    #[serde(default = "default_base_url")]
    base_url: String,
    /// The platform's token endpoint; default: `{base_url}/oauth2/token`.
    token_url: Option<String>,
    /// Environment variable holding the application's API key.
    api_key_env: String,
    /// The id the public key is registered under (`kid`).
    kid: String,
    /// Environment variable holding the private key (PEM); or `private_key_path`.
    private_key_env: Option<String>,
    /// File holding the private key (PEM); or `private_key_env`.
    private_key_path: Option<String>,
    /// Routing plan ids by message key: exact keys, or prefixes ending `*`
    /// (`"appointment.*"`); the longest prefix wins.
    #[serde(default)]
    routing_plans: BTreeMap<String, String>,
    /// The routing plan for keys `routing_plans` does not name.
    default_routing_plan: Option<String>,
    /// Messages in one request (at most 45,000).
    #[serde(default = "default_max_messages")]
    max_batch_messages: usize,
    /// Bytes in one request (at most 5,200,000).
    #[serde(default = "default_max_bytes")]
    max_batch_bytes: usize,
    /// How long a message waits for others to join its request, in milliseconds.
    #[serde(default = "default_linger_ms")]
    batch_linger_ms: u64,
    /// Time allowed for one request, in milliseconds.
    timeout_ms: Option<u64>,
}

fn default_base_url() -> String {
    "https://api.service.nhs.uk".into()
}

fn default_max_messages() -> usize {
    MAX_MESSAGES
}

fn default_max_bytes() -> usize {
    MAX_BYTES
}

fn default_linger_ms() -> u64 {
    50
}

/// Routing plans by message key.
#[derive(Debug, Clone, Default)]
struct RoutingPlans {
    exact: BTreeMap<String, String>,
    /// Prefixes with their plans, longest first.
    prefixes: Vec<(String, String)>,
    default: Option<String>,
}

impl RoutingPlans {
    fn new(plans: &BTreeMap<String, String>, default: Option<String>) -> Self {
        let mut routing = Self {
            default,
            ..Self::default()
        };
        for (key, plan) in plans {
            match key.strip_suffix('*') {
                Some(prefix) => routing.prefixes.push((prefix.to_string(), plan.clone())),
                None => {
                    routing.exact.insert(key.clone(), plan.clone());
                }
            }
        }
        routing
            .prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        routing
    }

    /// The plan for messages of `key`.
    fn of(&self, key: &str) -> Option<&str> {
        self.exact
            .get(key)
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(prefix, _)| key.starts_with(prefix.as_str()))
                    .map(|(_, plan)| plan)
            })
            .or(self.default.as_ref())
            .map(String::as_str)
    }
}

/// Sends NHS App messages through NHS Notify.
pub struct NhsNotifyProvider {
    name: String,
    api: Arc<Api>,
    plans: RoutingPlans,
    limits: Limits,
    /// The gatherer of requests, started with the first message (a runtime is needed).
    gatherer: OnceLock<mpsc::Sender<Pending>>,
}

/// The API calls, shared with the gatherer.
struct Api {
    name: String,
    client: reqwest::Client,
    batches_url: String,
    messages_url: String,
    tokens: Tokens,
}

impl NhsNotifyProvider {
    /// Checks the settings without reading secrets.
    pub fn check_config(config: &ProviderConfig) -> Result<(), String> {
        check_settings(config).map(|_| ())
    }

    /// Builds the provider, reading the API key and private key.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let settings = check_settings(config)?;
        let api_key = config.secret_from_env("api_key_env", &settings.api_key_env)?;
        let pem = match (&settings.private_key_env, &settings.private_key_path) {
            (Some(variable), None) => config.secret_from_env("private_key_env", variable)?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("`private_key_path` {path}: {e}"))?,
            _ => return Err("set one of `private_key_env` and `private_key_path`".into()),
        };
        let key = read_private_key(&pem).map_err(|e| e.to_string())?;
        let base = settings.base_url.trim_end_matches('/').to_string();
        let token_url = settings
            .token_url
            .clone()
            .unwrap_or_else(|| format!("{base}/oauth2/token"));
        let timeout =
            Duration::from_millis(settings.timeout_ms.unwrap_or(http::DEFAULT_TIMEOUT_MS));
        let client = http::client(timeout)?;
        let credentials = Credentials {
            api_key,
            kid: settings.kid.clone(),
            key,
            token_url,
        };
        Ok(Self {
            name: config.name.clone(),
            api: Arc::new(Api {
                name: config.name.clone(),
                tokens: Tokens::new(credentials, client.clone()),
                client,
                batches_url: format!("{base}/comms/v1/message-batches"),
                messages_url: format!("{base}/comms/v1/messages"),
            }),
            plans: RoutingPlans::new(&settings.routing_plans, settings.default_routing_plan),
            limits: Limits {
                max_messages: settings.max_batch_messages,
                max_bytes: settings.max_batch_bytes,
                linger: Duration::from_millis(settings.batch_linger_ms),
            },
            gatherer: OnceLock::new(),
        })
    }

    /// The message as a request entry, or why it cannot go.
    fn item(&self, message: &Outgoing) -> Result<Item, SendError> {
        let plan = self
            .plans
            .of(&message.template_key)
            .ok_or_else(|| SendError::Permanent {
                reason: format!(
                    "{}: no routing plan for messages of {} (set `routing_plans` or `default_routing_plan`)",
                    self.name, message.template_key
                ),
            })?;
        if message.body.chars().count() > NHS_APP_MAX_CHARS {
            return Err(SendError::Permanent {
                reason: format!(
                    "{}: the message is longer than the NHS App's {NHS_APP_MAX_CHARS} characters",
                    self.name
                ),
            });
        }
        let reference = message.message_id.to_string();
        let entry = json!({
            "messageReference": reference,
            "recipient": { "nhsNumber": message.address },
            "originator": { "odsCode": message.practice.ods_code },
            "personalisation": { "body": message.body },
        });
        Ok(Item {
            reference,
            routing_plan: plan.to_string(),
            entry: entry.to_string(),
        })
    }
}

/// Parses and checks the settings (shared by `check_config` and `new`).
fn check_settings(config: &ProviderConfig) -> Result<NhsNotifySettings, String> {
    if config.channel != Channel::NhsApp {
        return Err(format!(
            "kind \"nhs_notify\" carries nhsapp only, not {}",
            config.channel
        ));
    }
    let settings: NhsNotifySettings = config.settings()?;
    check_http_url("base_url", &settings.base_url)?;
    if let Some(url) = &settings.token_url {
        check_http_url("token_url", url)?;
    }
    for (key, value) in [
        ("api_key_env", &settings.api_key_env),
        ("kid", &settings.kid),
    ] {
        if value.trim().is_empty() {
            return Err(format!("`{key}` must not be empty"));
        }
    }
    if settings.private_key_env.is_some() == settings.private_key_path.is_some() {
        return Err("set exactly one of `private_key_env` and `private_key_path`".into());
    }
    if settings.routing_plans.is_empty() && settings.default_routing_plan.is_none() {
        return Err("name a routing plan: `routing_plans` or `default_routing_plan`".into());
    }
    let plans = settings
        .routing_plans
        .values()
        .chain(settings.default_routing_plan.iter());
    for plan in plans {
        if !is_uuid(plan) {
            return Err(format!("routing plan {plan:?} must be a UUID"));
        }
    }
    if !(1..=MAX_MESSAGES).contains(&settings.max_batch_messages) {
        return Err(format!("`max_batch_messages` must be 1 to {MAX_MESSAGES}"));
    }
    if !(1024..=MAX_BYTES).contains(&settings.max_batch_bytes) {
        return Err(format!("`max_batch_bytes` must be 1024 to {MAX_BYTES}"));
    }
    if settings.batch_linger_ms > 5_000 {
        return Err("`batch_linger_ms` must be at most 5000".into());
    }
    if settings.timeout_ms == Some(0) {
        return Err("`timeout_ms` must be at least 1".into());
    }
    Ok(settings)
}

/// Whether `s` is a UUID in 8-4-4-4-12 hex form.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[async_trait]
impl Post for Api {
    async fn post(&self, items: &[Item]) -> Vec<Result<Accepted, SendError>> {
        let every = |e: SendError| vec![Err(e); items.len()];
        let Some(first) = items.first() else {
            return Vec::new();
        };
        let token = match self.tokens.token(&self.name).await {
            Ok(token) => token,
            Err(e) => return every(e),
        };
        let entries = items
            .iter()
            .map(|i| i.entry.as_str())
            .collect::<Vec<_>>()
            .join(",");
        // Entries are JSON already: the envelope is written around them.
        let plan = serde_json::Value::from(first.routing_plan.as_str());
        let (url, body, single) = if let [only] = items {
            // The entry's fields become the message's attributes beside the routing plan.
            let fields = only
                .entry
                .strip_prefix('{')
                .and_then(|e| e.strip_suffix('}'))
                .unwrap_or_default();
            let body = format!(
                r#"{{"data":{{"type":"Message","attributes":{{"routingPlanId":{plan},{fields}}}}}}}"#
            );
            (&self.messages_url, body, Some(only.reference.as_str()))
        } else {
            let batch = serde_json::Value::from(random_uuid());
            let body = format!(
                r#"{{"data":{{"type":"MessageBatch","attributes":{{"routingPlanId":{plan},"messageBatchReference":{batch},"messages":[{entries}]}}}}}}"#
            );
            (&self.batches_url, body, None)
        };
        let response = self
            .client
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, JSON_API)
            .header(reqwest::header::ACCEPT, JSON_API)
            .header("X-Correlation-ID", random_uuid())
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => return every(http::transport_error(&self.name, &e)),
        };
        let status = response.status();
        let retry_after = http::retry_after(response.headers());
        let read = read_bounded(response, ANSWER_LIMIT).await;
        if status.is_success() {
            let mut ids = answer::accepted(read.as_deref().unwrap_or_default(), single);
            return items
                .iter()
                .map(|i| Ok(ids.remove(&i.reference).unwrap_or_default()))
                .collect();
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            self.tokens.forget().await;
        }
        answer::refused(
            &self.name,
            status,
            retry_after,
            read.as_deref().unwrap_or_default(),
            items.len(),
        )
        .into_iter()
        .map(Err)
        .collect()
    }
}

#[async_trait]
impl Provider for NhsNotifyProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::NhsApp
    }

    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError> {
        let item = self.item(message)?;
        if self.limits.linger.is_zero() {
            let mut results = self.api.post(std::slice::from_ref(&item)).await;
            return results.pop().unwrap_or_else(|| {
                Err(SendError::Retryable {
                    reason: format!("{}: no answer for the message", self.name),
                    retry_after: None,
                })
            });
        }
        let gatherer = self.gatherer.get_or_init(|| {
            let (to, arrivals) = mpsc::channel(WAITING);
            let post: Arc<dyn Post> = self.api.clone();
            tokio::spawn(batch::gather(arrivals, post, self.limits));
            to
        });
        let (answer, answered) = oneshot::channel();
        let gone = || SendError::Retryable {
            reason: format!("{}: the batching task stopped", self.name),
            retry_after: None,
        };
        gatherer
            .send(Pending { item, answer })
            .await
            .map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_plans_by_exact_key_then_longest_prefix_then_default() {
        let plans = BTreeMap::from([
            ("appointment.*".to_string(), "a".to_string()),
            ("appointment.cancelled".to_string(), "c".to_string()),
            ("status.*".to_string(), "s".to_string()),
        ]);
        let routing = RoutingPlans::new(&plans, Some("d".into()));
        assert_eq!(routing.of("appointment.cancelled"), Some("c"));
        assert_eq!(routing.of("appointment.moved"), Some("a"));
        assert_eq!(routing.of("status.closed"), Some("s"));
        assert_eq!(routing.of("push.invite"), Some("d"));
        assert_eq!(RoutingPlans::new(&plans, None).of("push.invite"), None);
    }
}
