//! A browser's push subscription as `PushSubscription.toJSON()` gives it, checked before it
//! is stored. The API (`POST .../push-subscriptions`) and the patients' sign-up page (with an
//! invitation or as an anonymous follower) both read it here.

use base64::Engine;
use serde::Deserialize;

use crate::domain::{EndpointRules, Invalid, PushEndpoint};
use crate::store::PushSubscription;

/// A subscription as `PushSubscription.toJSON()` gives it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SubscriptionInput {
    endpoint: String,
    keys: KeysInput,
    /// Browsers add this; it is accepted and ignored.
    #[serde(default, rename = "expirationTime")]
    _expiration_time: Option<serde_json::Value>,
}

/// The subscription's keys.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysInput {
    p256dh: String,
    auth: String,
}

/// The longest key text looked at: a 65-byte key is 87 base64url characters.
const MAX_KEY_CHARS: usize = 128;

fn base64url(value: &str) -> Option<Vec<u8>> {
    if value.len() > MAX_KEY_CHARS {
        return None;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .ok()
}

/// Checks a subscription: the endpoint against `[push]`'s rules ([`PushEndpoint`]), a
/// 65-byte uncompressed P-256 key and a 16-byte auth secret. Every place a subscription is
/// accepted (API, sign-up page, anonymous follow) goes through here.
pub fn parse_subscription(
    input: &SubscriptionInput,
    rules: &EndpointRules<'_>,
) -> Result<PushSubscription, Vec<Invalid>> {
    let mut errors = Vec::new();
    let endpoint = PushEndpoint::parse(&input.endpoint, rules)
        .map_err(|e| errors.push(e))
        .ok();
    if !base64url(&input.keys.p256dh).is_some_and(|k| k.len() == 65 && k[0] == 4) {
        errors.push(Invalid::new(
            "keys.p256dh",
            "must be a base64url uncompressed P-256 public key (65 bytes)",
        ));
    }
    if base64url(&input.keys.auth).map(|a| a.len()) != Some(16) {
        errors.push(Invalid::new(
            "keys.auth",
            "must be a base64url 16-byte secret",
        ));
    }
    match endpoint {
        Some(endpoint) if errors.is_empty() => Ok(PushSubscription {
            endpoint: endpoint.into_string(),
            p256dh: input.keys.p256dh.clone(),
            auth: input.keys.auth.clone(),
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::AddressPolicy;
    use proptest::prelude::*;

    fn input(endpoint: &str, p256dh_len: usize, auth_len: usize) -> SubscriptionInput {
        let mut key = vec![4u8; p256dh_len];
        if let Some(first) = key.first_mut() {
            *first = 4;
        }
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        SubscriptionInput {
            endpoint: endpoint.into(),
            keys: KeysInput {
                p256dh: b64(&key),
                auth: b64(&vec![1u8; auth_len]),
            },
            _expiration_time: None,
        }
    }

    fn parse(
        input: &SubscriptionInput,
        insecure: &[String],
        addresses: &AddressPolicy,
    ) -> Result<PushSubscription, Vec<Invalid>> {
        let hosts = ["fcm.googleapis.com".to_string(), "127.0.0.1".to_string()];
        let rules = EndpointRules {
            max_bytes: 1_024,
            allowed_hosts: &hosts,
            insecure_hosts: insecure,
            addresses,
        };
        parse_subscription(input, &rules)
    }

    #[test]
    fn only_push_service_endpoints_with_real_keys_pass() {
        let strict = AddressPolicy::default();
        assert!(parse(
            &input("https://fcm.googleapis.com/fcm/send/abc", 65, 16),
            &[],
            &strict
        )
        .is_ok());
        let fields = |r: Result<PushSubscription, Vec<Invalid>>| {
            r.unwrap_err()
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        for endpoint in [
            "http://fcm.googleapis.com/x",
            "https://push.example.com/x",
            "https://10.0.0.5/x",
            "https://localhost/x",
        ] {
            assert_eq!(
                fields(parse(&input(endpoint, 65, 16), &[], &strict)),
                ["endpoint"],
                "{endpoint}"
            );
        }
        assert_eq!(
            fields(parse(
                &input("https://fcm.googleapis.com/x", 64, 8),
                &[],
                &strict
            )),
            ["keys.p256dh", "keys.auth"]
        );
        let huge = format!("https://fcm.googleapis.com/{}", "a".repeat(1_000_000));
        assert_eq!(
            fields(parse(&input(&huge, 65, 16), &[], &strict)),
            ["endpoint"]
        );
        let loopback = AddressPolicy::parse(&["127.0.0.0/8"]).unwrap();
        assert!(parse(
            &input("http://127.0.0.1:9/x", 65, 16),
            &["127.0.0.1".into()],
            &loopback
        )
        .is_ok());
        assert_eq!(
            fields(parse(
                &input("http://127.0.0.1:9/x", 65, 16),
                &["127.0.0.1".into()],
                &strict
            )),
            ["endpoint"]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any JSON body is read as a subscription or refused, never a panic; what is
        /// accepted has an endpoint within the cap.
        #[test]
        fn any_json_is_parsed_or_refused(
            endpoint in ".{0,2048}",
            p256dh in "[A-Za-z0-9_=+/-]{0,200}",
            auth in "[A-Za-z0-9_=+/-]{0,64}",
            extra in proptest::option::of(any::<i64>()),
        ) {
            let body = serde_json::json!({
                "endpoint": endpoint,
                "keys": { "p256dh": p256dh, "auth": auth },
                "expirationTime": extra,
            });
            let strict = AddressPolicy::default();
            if let Ok(input) = serde_json::from_value::<SubscriptionInput>(body) {
                if let Ok(subscription) = parse(&input, &[], &strict) {
                    prop_assert!(subscription.endpoint.len() <= 1_024);
                }
            }
        }

        /// Arbitrary JSON values never make the subscription reader panic.
        #[test]
        fn arbitrary_json_values_are_refused_cleanly(text in "[\\[\\]{}\":,a-z0-9 ]{0,256}") {
            if let Ok(input) = serde_json::from_str::<SubscriptionInput>(&text) {
                let strict = AddressPolicy::default();
                let _ = parse(&input, &[], &strict);
            }
        }
    }
}
