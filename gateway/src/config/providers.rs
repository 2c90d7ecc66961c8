//! `[[providers]]` and `[receipts]`: the providers messages leave through, and checking
//! their callbacks.

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Rate};

/// One provider: a named instance of a provider kind serving one channel. The kind's own
/// settings sit beside these keys in the same table and are checked by the kind.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProviderConfig {
    /// Unique name, recorded on every message it sends.
    pub name: String,
    /// Which implementation, such as `log`, `twilio`, `smtp`.
    pub kind: String,
    /// The channel it carries.
    pub channel: Channel,
    /// Its contractual rate, never exceeded; absent means no limit.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Messages that may go at once after a quiet spell (default: one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
    /// What it charges, in pence: per segment for SMS, per message on other channels.
    /// Absent: 2.4p a segment for SMS, nothing for the others (see `cost::Price`).
    #[serde(default)]
    pub price_pence: Option<f64>,
    /// The kind's settings (e.g. `path` for `log`, `base_url` for HTTP kinds).
    #[serde(flatten)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl ProviderConfig {
    /// The kind's settings as its own type; unknown or mistyped keys are refused by name.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(serde_json::Value::Object(self.settings.clone()))
            .map_err(|e| e.to_string())
    }

    /// Reads a secret from the environment variable named by setting `key` (secrets are
    /// never written in config files), naming both if it is missing.
    pub fn secret_from_env(&self, key: &str, variable: &str) -> Result<String, String> {
        std::env::var(variable)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!("`{key}` names the environment variable {variable}, which is not set")
            })
    }
}

fn default_nhs_notify_application_id_env() -> String {
    "NHS_NOTIFY_APPLICATION_ID".into()
}

fn default_nhs_notify_api_key_env() -> String {
    "NHS_NOTIFY_API_KEY".into()
}

/// Checking providers' callbacks: each kind's secret comes from the named environment
/// variable; a kind whose variable is unset refuses its callbacks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsConfig {
    /// The gateway's base URL as providers call it (Twilio signs the full URL).
    pub public_url: String,
    /// Variable holding the Twilio auth token (receipts and inbound SMS).
    pub twilio_auth_token_env: String,
    /// Variable holding the bearer token Notify sends with callbacks.
    pub notify_callback_token_env: String,
    /// Variable holding the HMAC secret of `webhook` callbacks.
    pub webhook_secret_env: String,
    /// Variable holding the NHS England API platform application id of our NHS Notify
    /// application: NHS Notify signs callbacks with `{application id}.{api key}`.
    #[serde(default = "default_nhs_notify_application_id_env")]
    pub nhs_notify_application_id_env: String,
    /// Variable holding the application's API key, which NHS Notify also sends as
    /// `x-api-key` with each callback (the `nhs_notify` provider's `api_key_env`).
    #[serde(default = "default_nhs_notify_api_key_env")]
    pub nhs_notify_api_key_env: String,
    /// Variable holding the secret that signs email unsubscribe links; without it, bulk
    /// email goes out without List-Unsubscribe headers.
    pub unsubscribe_secret_env: String,
}
