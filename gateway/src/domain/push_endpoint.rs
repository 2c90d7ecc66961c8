//! A browser's push endpoint, checked once where a subscription comes in: bounded in
//! length, https on port 443, on a push service's host, and not an internal address.

use super::Invalid;
use crate::outbound::{check_literal, AddressPolicy, ADDRESS_NOT_ALLOWED};

/// The endpoint length accepted unless `[push] max_endpoint_bytes` says otherwise: the big
/// push services' endpoints are a few hundred bytes.
pub const DEFAULT_MAX_ENDPOINT_BYTES: usize = 1_024;

/// What an endpoint must satisfy (from `[push]` in config).
#[derive(Debug, Clone, Copy)]
pub struct EndpointRules<'a> {
    /// The longest endpoint, in bytes.
    pub max_bytes: usize,
    /// Push service host names: each matches itself and its subdomains (`*.` is optional).
    /// Empty means any host name.
    pub allowed_hosts: &'a [String],
    /// Hosts whose endpoints may be plain http and on any port (a push service on your own
    /// network, tests). They must still be allowed hosts.
    pub insecure_hosts: &'a [String],
    /// Which IP-literal hosts may be used (names are checked again when sending).
    pub addresses: &'a AddressPolicy,
}

/// An endpoint that passed every rule, as the browser gave it (surrounding spaces
/// removed): the stop page finds it by the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEndpoint(String);

impl PushEndpoint {
    /// Checks `raw` against `rules`; the refusal names the field `endpoint`.
    pub fn parse(raw: &str, rules: &EndpointRules<'_>) -> Result<Self, Invalid> {
        let refuse = |reason: String| Invalid::new("endpoint", reason);
        if raw.len() > rules.max_bytes {
            return Err(refuse(format!(
                "is longer than {} bytes, more than any push service uses",
                rules.max_bytes
            )));
        }
        let endpoint = raw.trim();
        let url = url::Url::parse(endpoint).map_err(|e| refuse(format!("is not a URL: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("must not carry a user name or password".into()));
        }
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => bare(host),
            _ => return Err(refuse("has no host".into())),
        };
        let insecure = rules.insecure_hosts.iter().any(|h| bare(h) == host);
        match url.scheme() {
            "https" => {}
            "http" if insecure => {}
            _ => return Err(refuse("must be an https URL".into())),
        }
        if !insecure && url.port_or_known_default() != Some(443) {
            return Err(refuse("must be on port 443".into()));
        }
        if check_literal(&url, rules.addresses).is_err() {
            return Err(refuse(ADDRESS_NOT_ALLOWED.into()));
        }
        let is_literal = !matches!(url.host(), Some(url::Host::Domain(_)));
        if !rules.allowed_hosts.is_empty()
            && !rules
                .allowed_hosts
                .iter()
                .any(|allowed| host_matches(&host, allowed, is_literal))
        {
            return Err(refuse(
                "must be on a browser push service's host (see [push] allowed_endpoint_hosts)"
                    .into(),
            ));
        }
        Ok(Self(endpoint.to_string()))
    }

    /// The endpoint.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The endpoint, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A host as compared: lower case, without IPv6 brackets or a final dot.
fn bare(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Whether `host` is `allowed` or (for names) one of its subdomains.
fn host_matches(host: &str, allowed: &str, is_literal: bool) -> bool {
    let allowed = bare(allowed);
    let allowed = allowed.trim_start_matches("*.").trim_start_matches('.');
    if allowed.is_empty() {
        return false;
    }
    host == allowed
        || (!is_literal
            && host.len() > allowed.len()
            && host.ends_with(allowed)
            && host.as_bytes()[host.len() - allowed.len() - 1] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hosts() -> Vec<String> {
        [
            "fcm.googleapis.com",
            "*.push.services.mozilla.com",
            "push.apple.com",
            "notify.windows.com",
        ]
        .map(String::from)
        .to_vec()
    }

    fn parse(raw: &str, insecure: &[String], addresses: &AddressPolicy) -> Result<String, String> {
        let allowed = hosts();
        let rules = EndpointRules {
            max_bytes: DEFAULT_MAX_ENDPOINT_BYTES,
            allowed_hosts: &allowed,
            insecure_hosts: insecure,
            addresses,
        };
        PushEndpoint::parse(raw, &rules)
            .map(PushEndpoint::into_string)
            .map_err(|e| e.reason)
    }

    #[test]
    fn the_browser_push_services_pass() {
        let strict = AddressPolicy::default();
        for endpoint in [
            "https://fcm.googleapis.com/fcm/send/abc:APA91b",
            "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
            "https://web.push.apple.com/QGuQyavXutnMb",
            "https://wns2-par02p.notify.windows.com/w/?token=BQYAAAB",
            "https://FCM.googleapis.com:443/fcm/send/abc",
            " https://fcm.googleapis.com/fcm/send/abc ",
        ] {
            assert!(parse(endpoint, &[], &strict).is_ok(), "{endpoint}");
        }
        assert_eq!(
            parse(" https://fcm.googleapis.com/x ", &[], &strict).unwrap(),
            "https://fcm.googleapis.com/x"
        );
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        let strict = AddressPolicy::default();
        let long = format!("https://fcm.googleapis.com/{}", "a".repeat(1_000));
        for (endpoint, reason) in [
            (long.as_str(), "longer than 1024 bytes"),
            ("http://fcm.googleapis.com/x", "https"),
            ("ftp://fcm.googleapis.com/x", "https"),
            ("https://fcm.googleapis.com:8443/x", "port 443"),
            ("https://push.example.net/x", "push service's host"),
            (
                "https://evilfcm.googleapis.com.attacker.net/x",
                "push service's host",
            ),
            ("https://notfcm.googleapis.com/x", "push service's host"),
            ("https://push.apple.com.evil.net/x", "push service's host"),
            ("https://127.0.0.1/x", ADDRESS_NOT_ALLOWED),
            ("https://[::ffff:10.0.0.1]/x", ADDRESS_NOT_ALLOWED),
            ("https://2130706433/x", ADDRESS_NOT_ALLOWED),
            ("https://user:pw@fcm.googleapis.com/x", "user name"),
            ("not a url", "not a URL"),
            ("", "not a URL"),
        ] {
            let refused = parse(endpoint, &[], &strict).unwrap_err();
            assert!(refused.contains(reason), "{endpoint}: {refused}");
        }
    }

    #[test]
    fn insecure_hosts_may_use_http_and_any_port_but_not_internal_addresses() {
        let insecure = ["127.0.0.1".to_string(), "fcm.googleapis.com".to_string()];
        let strict = AddressPolicy::default();
        assert!(parse("http://fcm.googleapis.com:8080/x", &insecure, &strict).is_ok());
        let refused = parse("http://127.0.0.1:9/x", &insecure, &strict).unwrap_err();
        assert_eq!(refused, ADDRESS_NOT_ALLOWED);
        let loopback = AddressPolicy::parse(&["127.0.0.0/8"]).unwrap();
        let refused = parse("http://127.0.0.1:9/x", &insecure, &loopback).unwrap_err();
        assert!(refused.contains("push service's host"), "{refused}");
    }

    #[test]
    fn hosts_match_themselves_and_subdomains_only() {
        assert!(host_matches("a.b.example", "b.example", false));
        assert!(host_matches("b.example", "*.b.example", false));
        assert!(!host_matches("ab.example", "b.example", false));
        assert!(!host_matches("b.example", "", false));
        assert!(host_matches("127.0.0.1", "127.0.0.1", true));
        assert!(!host_matches("1.127.0.0.1", "127.0.0.1", true));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text, of any length up to 4 KB, is accepted or refused without panicking,
        /// and what is accepted is no longer than the cap and starts with https.
        #[test]
        fn any_text_is_parsed_or_refused(raw in ".{0,4096}") {
            let strict = AddressPolicy::default();
            if let Ok(endpoint) = parse(&raw, &[], &strict) {
                prop_assert!(endpoint.len() <= DEFAULT_MAX_ENDPOINT_BYTES);
                let url = url::Url::parse(&endpoint).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(url.scheme(), "https");
            }
        }

        /// URL-shaped text on arbitrary hosts and ports: accepted only on an allowed host,
        /// on port 443.
        #[test]
        fn url_shaped_text_is_held_to_the_rules(
            host in "[a-z0-9.-]{1,40}(\\.push\\.apple\\.com)?",
            port in proptest::option::of(any::<u16>()),
            path in "[!-~]{0,200}",
        ) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let raw = format!("https://{host}{port}/{path}");
            let strict = AddressPolicy::default();
            if let Ok(endpoint) = parse(&raw, &[], &strict) {
                let url = url::Url::parse(&endpoint).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(url.port_or_known_default(), Some(443));
                let host = url.host_str().unwrap_or_default().to_string();
                prop_assert!(hosts().iter().any(|h| host_matches(&host, h, false)), "{}", host);
            }
        }
    }
}
