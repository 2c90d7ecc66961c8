//! Message templates: every save a new version, the newest one in use.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{Channel, Language, PracticeId, TemplateVersionId};

/// One saved version of a message template.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TemplateVersion {
    /// Row id.
    pub id: TemplateVersionId,
    /// The practice whose override it is; `None` for the global default.
    pub practice_id: Option<PracticeId>,
    /// Template key, such as `status.closed`.
    pub key: String,
    /// Channel.
    pub channel: Channel,
    /// Language.
    pub language: Language,
    /// Version number, from 1, per (practice, key, channel, language).
    pub version: i32,
    /// Email subject or push title.
    pub subject: Option<String>,
    /// SMS text, email text part or push body.
    pub body: String,
    /// Email HTML part.
    pub html: Option<String>,
    /// Push link.
    pub link: Option<String>,
    /// Who saved it.
    pub author: String,
    /// Why, in their words (or "rolled back to version N").
    pub note: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A template to save as the next version.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    /// The practice whose override it is; `None` for the global default.
    pub practice_id: Option<PracticeId>,
    /// Template key.
    pub key: String,
    /// Channel.
    pub channel: Channel,
    /// Language.
    pub language: Language,
    /// Email subject or push title.
    pub subject: Option<String>,
    /// SMS text, email text part or push body.
    pub body: String,
    /// Email HTML part.
    pub html: Option<String>,
    /// Push link.
    pub link: Option<String>,
    /// Who saves it.
    pub author: String,
    /// Why.
    pub note: Option<String>,
}

/// Message templates: every save a new version, the newest one in use.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// The newest version of every (practice, key, channel, language).
    async fn current_templates(&self) -> StoreResult<Vec<TemplateVersion>>;
    /// Every version of one template, newest first.
    async fn template_history(
        &self,
        practice_id: Option<PracticeId>,
        key: &str,
        channel: Channel,
        language: Language,
    ) -> StoreResult<Vec<TemplateVersion>>;
    /// Saves `template` as its next version; `Duplicate` if another save took that number.
    async fn save_template(
        &self,
        template: &NewTemplate,
        now: DateTime<Utc>,
    ) -> StoreResult<TemplateVersion>;
    /// Saves each global default that has no version yet as version 1 (first start, or a
    /// key added by an upgrade), and as the next version where the newest one is an earlier
    /// release's shipped wording (same author, other text) that nobody has edited since.
    /// Returns how many versions were added.
    async fn seed_templates(
        &self,
        defaults: &[NewTemplate],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
}
