//! `[push]`: accepting browsers' push subscriptions.

use serde::{Deserialize, Serialize};

/// Accepting browsers' push subscriptions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Hosts whose endpoints may be plain http on any port (tests, a push service on your
    /// own network). They must still be in `allowed_endpoint_hosts`, and an internal
    /// address must be in `allowed_networks`.
    pub allow_insecure_hosts: Vec<String>,
    /// The longest endpoint accepted, in bytes.
    #[serde(default = "default_max_endpoint_bytes")]
    pub max_endpoint_bytes: usize,
    /// Push service hosts endpoints may be on; each matches itself and its subdomains.
    /// Empty means any host name.
    #[serde(default = "default_endpoint_hosts")]
    pub allowed_endpoint_hosts: Vec<String>,
    /// Internal networks (CIDR) push requests may reach all the same; by default none.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// Anonymous follows one client address (an IPv6 /64) may make per minute.
    #[serde(default = "default_follows_per_address_per_minute")]
    pub follows_per_address_per_minute: u32,
    /// Anonymous followers one practice may have.
    #[serde(default = "default_followers_per_practice")]
    pub followers_per_practice: u64,
    /// Push receipts (`shown`, `read`) one client address (an IPv6 /64) may post per minute.
    #[serde(default = "default_receipts_per_address_per_minute")]
    pub receipts_per_address_per_minute: u32,
}

fn default_max_endpoint_bytes() -> usize {
    crate::domain::DEFAULT_MAX_ENDPOINT_BYTES
}

fn default_endpoint_hosts() -> Vec<String> {
    [
        "fcm.googleapis.com",
        "push.services.mozilla.com",
        "push.apple.com",
        "notify.windows.com",
    ]
    .map(String::from)
    .to_vec()
}

fn default_follows_per_address_per_minute() -> u32 {
    30
}

/// Two receipts a message, for a household's few browsers catching up on a day's notices.
fn default_receipts_per_address_per_minute() -> u32 {
    120
}

fn default_followers_per_practice() -> u64 {
    100_000
}

impl PushConfig {
    /// Checks the values, naming the key of the first bad one.
    pub fn check(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, reason: String| Err((format!("push.{key}"), reason));
        if !(64..=1_048_576).contains(&self.max_endpoint_bytes) {
            return invalid("max_endpoint_bytes", "must be from 64 to 1048576".into());
        }
        if let Err(e) = crate::outbound::AddressPolicy::parse(&self.allowed_networks) {
            return invalid("allowed_networks", e.to_string());
        }
        if self
            .allowed_endpoint_hosts
            .iter()
            .chain(&self.allow_insecure_hosts)
            .any(|h| h.trim().trim_start_matches("*.").is_empty())
        {
            return invalid(
                "allowed_endpoint_hosts",
                "and allow_insecure_hosts must not contain empty host names".into(),
            );
        }
        if self.receipts_per_address_per_minute == 0 {
            return invalid(
                "receipts_per_address_per_minute",
                "must be at least 1".into(),
            );
        }
        if self.follows_per_address_per_minute == 0 {
            return invalid(
                "follows_per_address_per_minute",
                "must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// The networks push requests may reach besides public addresses (checked at load).
    pub fn address_policy(&self) -> crate::outbound::AddressPolicy {
        crate::outbound::AddressPolicy::parse(&self.allowed_networks).unwrap_or_default()
    }

    /// The rules every push endpoint is held to where a subscription comes in.
    pub fn endpoint_rules<'a>(
        &'a self,
        addresses: &'a crate::outbound::AddressPolicy,
    ) -> crate::domain::EndpointRules<'a> {
        crate::domain::EndpointRules {
            max_bytes: self.max_endpoint_bytes,
            allowed_hosts: &self.allowed_endpoint_hosts,
            insecure_hosts: &self.allow_insecure_hosts,
            addresses,
        }
    }
}
