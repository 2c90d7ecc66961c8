//! A practice's approval rules (PIN, two-person threshold, sources that post without
//! approval) and its tags, as the API and the console's form take them.

use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::domain::Invalid;
use crate::store::{
    AccessStore, ApprovalSettings, AuditEntry, Practice, ProposalStore, StoreError,
};

/// Tags a practice may have.
const MAX_TAGS: usize = 50;

/// A practice's approval rules as the API takes them. The PIN is write-only: `null` removes
/// it, leaving it out keeps it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRules {
    /// 4 to 8 digits; `null` removes the PIN, leaving it out keeps it.
    #[serde(default, deserialize_with = "present")]
    pub staff_pin: Option<Option<String>>,
    /// Above this many recipients a broadcast needs a second approver; none: never.
    #[serde(default)]
    pub second_approval_above: Option<u64>,
    /// Status sources whose proposals post without approval.
    #[serde(default)]
    pub auto_post_sources: Vec<String>,
    /// The systems the practice depends on (`emis-web`, ...).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Whether `tag` is lower-case letters, digits and dashes (`emis-web`), 1 to 50 long.
fn valid_tag(tag: &str) -> bool {
    (1..=50).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl ApprovalRules {
    /// The settings to store (keeping `current`'s PIN unless one is given), or every
    /// field that is wrong.
    pub fn parse(
        self,
        current: &ApprovalSettings,
        sources: &[String],
    ) -> Result<ApprovalSettings, Vec<Invalid>> {
        let mut errors = Vec::new();
        let staff_pin = match self.staff_pin {
            None => current.staff_pin.clone(),
            Some(None) => None,
            Some(Some(pin)) => {
                let pin = pin.trim().to_string();
                if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
                    errors.push(Invalid::new("staff_pin", "must be 4 to 8 digits"));
                }
                Some(pin)
            }
        };
        let mut tags: Vec<String> = self
            .tags
            .iter()
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        tags.sort();
        tags.dedup();
        if tags.len() > MAX_TAGS {
            errors.push(Invalid::new("tags", format!("at most {MAX_TAGS} tags")));
        }
        for tag in &tags {
            if !valid_tag(tag) {
                errors.push(Invalid::new(
                    "tags",
                    format!("{tag:?}: use lower-case letters, digits and dashes, e.g. emis-web"),
                ));
            }
        }
        let mut auto_post_sources = self.auto_post_sources.clone();
        auto_post_sources.sort();
        auto_post_sources.dedup();
        for source in &auto_post_sources {
            if !sources.contains(source) {
                errors.push(Invalid::new(
                    "auto_post_sources",
                    format!("{source:?} is not a configured status source"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(ApprovalSettings {
                staff_pin,
                second_approval_above: self.second_approval_above,
                auto_post_sources,
                tags,
            })
        } else {
            Err(errors)
        }
    }
}

/// The names of the configured status sources: what `auto_post_sources` may name.
pub fn source_names(config: &crate::config::Config) -> Vec<String> {
    config.sources.iter().map(|s| s.name.clone()).collect()
}

/// The settings as people may see them: whether a PIN is required, never the PIN.
pub fn settings_view(settings: &ApprovalSettings) -> serde_json::Value {
    json!({
        "staff_pin_required": settings.staff_pin.is_some(),
        "second_approval_above": settings.second_approval_above,
        "auto_post_sources": settings.auto_post_sources,
        "tags": settings.tags,
    })
}

/// Stores `settings` for the practice as `actor`, and audits it (never the PIN itself).
pub async fn save<S: ProposalStore + AccessStore + ?Sized>(
    store: &S,
    practice: &Practice,
    settings: &ApprovalSettings,
    previous: &ApprovalSettings,
    actor: &str,
) -> Result<(), StoreError> {
    let now = Utc::now();
    store
        .save_approval_settings(practice.id, settings, actor, now)
        .await?;
    let mut details = settings_view(settings);
    details["pin_changed"] = json!(settings.staff_pin != previous.staff_pin);
    store
        .audit(
            &AuditEntry {
                actor: actor.to_string(),
                action: "approval.settings_saved".into(),
                practice_id: Some(practice.id),
                subject: None,
                details: Some(details.to_string()),
            },
            now,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: serde_json::Value) -> ApprovalRules {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_pin_is_kept_unless_given_or_cleared() {
        let current = ApprovalSettings {
            staff_pin: Some("4821".into()),
            ..Default::default()
        };
        let kept = rules(json!({})).parse(&current, &[]).unwrap();
        assert_eq!(kept.staff_pin.as_deref(), Some("4821"));
        let cleared = rules(json!({ "staff_pin": null }))
            .parse(&current, &[])
            .unwrap();
        assert_eq!(cleared.staff_pin, None);
        let errors = rules(json!({ "staff_pin": "12a4" }))
            .parse(&current, &[])
            .unwrap_err();
        assert_eq!(errors[0].field, "staff_pin");
    }

    #[test]
    fn tags_are_lower_case_words_and_sources_must_exist() {
        let parsed = rules(json!({ "tags": ["EMIS-Web", " spine ", "spine"] }))
            .parse(&ApprovalSettings::default(), &[])
            .unwrap();
        assert_eq!(parsed.tags, vec!["emis-web", "spine"]);
        let errors = rules(json!({ "tags": ["emis web"], "auto_post_sources": ["nope"] }))
            .parse(&ApprovalSettings::default(), &["emis".into()])
            .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["tags", "auto_post_sources"]);
        assert!(rules(json!({ "auto_post_sources": ["emis"] }))
            .parse(&ApprovalSettings::default(), &["emis".into()])
            .is_ok());
    }
}
