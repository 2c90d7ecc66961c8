//! `[[sources]]`: supplier status pages and feeds the leader polls, and `[status_sources]`:
//! the outbound address rules their URLs are held to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The shortest interval a configured source may be polled at: suppliers publish their
/// status pages for people and rate-limit robots.
pub const MIN_INTERVAL_SECONDS: u64 = 10;
/// The longest a source name may be, in characters (it is shown in logs and proposals).
pub const MAX_SOURCE_NAME_CHARS: usize = 64;

/// What a source's document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Atlassian Statuspage v2 `summary.json`.
    Statuspage,
    /// RSS 2.0 or Atom.
    Feed,
}

impl SourceKind {
    /// The word used in config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Statuspage => "statuspage",
            SourceKind::Feed => "feed",
        }
    }
}

/// One supplier status source, as written in a `[[sources]]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique; names the source in logs and as the origin of the proposals it makes.
    pub name: String,
    pub kind: SourceKind,
    /// The document polled: `https://status.example.com/api/v2/summary.json`, or a feed.
    pub url: String,
    /// Time between polls while the source answers; at least [`MIN_INTERVAL_SECONDS`].
    #[serde(default = "default_interval_seconds")]
    pub interval_seconds: u64,
    /// The longest one poll may take, connecting and reading the whole document.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// The supplier's status page for people, shown beside proposals when an incident has
    /// no link of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Statuspage component (name or id) -> the practice tag it stands for.
    #[serde(default)]
    pub components: BTreeMap<String, String>,
    /// Word or phrase in an incident's title or text -> the practice tag it stands for.
    #[serde(default)]
    pub keywords: BTreeMap<String, String>,
}

fn default_interval_seconds() -> u64 {
    60
}

fn default_timeout_seconds() -> u64 {
    10
}

/// The addresses status sources may be fetched from.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSourcesConfig {
    /// Internal networks (CIDR) sources may be on all the same; by default none.
    #[serde(default)]
    pub allowed_networks: Vec<String>,
    /// Whether a source URL may be plain `http` (tests, a feed on your own network).
    #[serde(default)]
    pub allow_http: bool,
}

impl StatusSourcesConfig {
    /// The networks sources may reach besides public addresses (checked at load).
    pub fn address_policy(&self) -> crate::outbound::AddressPolicy {
        crate::outbound::AddressPolicy::parse(&self.allowed_networks).unwrap_or_default()
    }

    /// Checks the values, naming the key of the first bad one.
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Err(e) = crate::outbound::AddressPolicy::parse(&self.allowed_networks) {
            return Err(("status_sources.allowed_networks".into(), e.to_string()));
        }
        Ok(())
    }
}

/// Checks every `[[sources]]` table against the others and `[status_sources]`, naming the key
/// of the first bad value (`sources[2].url`).
pub fn check_sources(
    sources: &[SourceConfig],
    network: &StatusSourcesConfig,
) -> Result<(), (String, String)> {
    for (i, source) in sources.iter().enumerate() {
        let invalid = |key: &str, reason: String| Err((format!("sources[{i}].{key}"), reason));
        let name = source.name.trim();
        if name.is_empty() {
            return invalid("name", "must not be empty".into());
        }
        if name != source.name
            || name.chars().count() > MAX_SOURCE_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return invalid(
                "name",
                format!(
                    "must be at most {MAX_SOURCE_NAME_CHARS} characters, without control characters or surrounding spaces"
                ),
            );
        }
        if sources[..i].iter().any(|other| other.name == source.name) {
            return invalid("name", format!("{:?} is used twice", source.name));
        }
        if let Err(reason) = check_url(&source.url, network.allow_http) {
            return invalid("url", reason);
        }
        if let Some(link) = &source.link {
            if let Err(reason) = check_url(link, true) {
                return invalid("link", reason);
            }
        }
        if !(MIN_INTERVAL_SECONDS..=86_400).contains(&source.interval_seconds) {
            return invalid(
                "interval_seconds",
                format!("must be from {MIN_INTERVAL_SECONDS} to 86400"),
            );
        }
        if !(1..=300).contains(&source.timeout_seconds) {
            return invalid("timeout_seconds", "must be from 1 to 300".into());
        }
        if source.components.is_empty() && source.keywords.is_empty() {
            return invalid(
                "components",
                "or `keywords` must map at least one component or word to a practice tag".into(),
            );
        }
        for (key, map) in [
            ("components", &source.components),
            ("keywords", &source.keywords),
        ] {
            if map
                .iter()
                .any(|(from, tag)| from.trim().is_empty() || tag.trim().is_empty())
            {
                return invalid(key, "must not map or name an empty value".into());
            }
        }
    }
    Ok(())
}

/// Whether `url` is an absolute `https` URL with a host (`http` too if `allow_http`).
fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err("must be https (set `status_sources.allow_http` to allow http)".into())
        }
        _ => return Err("must be an https URL".into()),
    }
    if parsed.host().is_none() {
        return Err("must name a host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, url: &str) -> SourceConfig {
        SourceConfig {
            name: name.into(),
            kind: SourceKind::Statuspage,
            url: url.into(),
            interval_seconds: 60,
            timeout_seconds: 10,
            link: None,
            components: BTreeMap::from([("EMIS Web".into(), "emis-web".into())]),
            keywords: BTreeMap::new(),
        }
    }

    fn key_of(sources: &[SourceConfig], network: &StatusSourcesConfig) -> String {
        check_sources(sources, network).unwrap_err().0
    }

    #[test]
    fn good_sources_pass() {
        let strict = StatusSourcesConfig::default();
        let a = source("emis", "https://status.emis.test/api/v2/summary.json");
        let mut b = source("tpp", "https://tpp.test/feed.atom");
        b.kind = SourceKind::Feed;
        b.components.clear();
        b.keywords.insert("SystmOne".into(), "systmone".into());
        b.link = Some("https://tpp.test/status".into());
        assert_eq!(check_sources(&[a, b], &strict), Ok(()));
    }

    #[test]
    fn names_must_be_present_and_unique() {
        let strict = StatusSourcesConfig::default();
        let url = "https://a.test/x";
        assert_eq!(key_of(&[source(" ", url)], &strict), "sources[0].name");
        assert_eq!(key_of(&[source(" a", url)], &strict), "sources[0].name");
        assert_eq!(
            key_of(&[source("a", url), source("a", url)], &strict),
            "sources[1].name"
        );
    }

    #[test]
    fn http_needs_allowing() {
        let strict = StatusSourcesConfig::default();
        let one = [source("a", "http://127.0.0.1:9/summary.json")];
        assert_eq!(key_of(&one, &strict), "sources[0].url");
        let open = StatusSourcesConfig {
            allow_http: true,
            ..Default::default()
        };
        assert_eq!(check_sources(&one, &open), Ok(()));
        for bad in [
            "ftp://a.test/x",
            "/summary.json",
            "https://",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                key_of(&[source("a", bad)], &open),
                "sources[0].url",
                "{bad}"
            );
        }
    }

    #[test]
    fn intervals_timeouts_and_mappings_are_bounded() {
        let strict = StatusSourcesConfig::default();
        let mut s = source("a", "https://a.test/x");
        s.interval_seconds = MIN_INTERVAL_SECONDS - 1;
        assert_eq!(key_of(&[s.clone()], &strict), "sources[0].interval_seconds");
        s.interval_seconds = MIN_INTERVAL_SECONDS;
        s.timeout_seconds = 0;
        assert_eq!(key_of(&[s.clone()], &strict), "sources[0].timeout_seconds");
        s.timeout_seconds = 5;
        s.components.clear();
        assert_eq!(key_of(&[s.clone()], &strict), "sources[0].components");
        s.keywords.insert("EMIS".into(), " ".into());
        assert_eq!(key_of(&[s.clone()], &strict), "sources[0].keywords");
        s.keywords.insert("EMIS".into(), "emis-web".into());
        s.link = Some("not a link".into());
        assert_eq!(key_of(&[s], &strict), "sources[0].link");
    }

    #[test]
    fn allowed_networks_are_checked() {
        let bad = StatusSourcesConfig {
            allowed_networks: vec!["10.0.0.0/33".into()],
            allow_http: false,
        };
        assert_eq!(
            bad.check().unwrap_err().0,
            "status_sources.allowed_networks"
        );
        let loopback = StatusSourcesConfig {
            allowed_networks: vec!["127.0.0.0/8".into()],
            allow_http: true,
        };
        assert_eq!(loopback.check(), Ok(()));
        assert!(loopback
            .address_policy()
            .permits("127.0.0.1".parse().unwrap()));
    }
}
