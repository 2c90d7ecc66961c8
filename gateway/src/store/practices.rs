//! Practices: the tenants of the gateway.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{ChannelOrder, OdsCode, PracticeId};
use crate::schedule::PracticeZone;

/// A practice to add.
#[derive(Debug, Clone)]
pub struct NewPractice {
    /// Its ODS code.
    pub ods_code: OdsCode,
    /// Name patients know it by.
    pub name: String,
    /// Public phone number, for messages.
    pub phone: Option<String>,
    /// Public website, for messages.
    pub website: Option<String>,
    /// Email address replies go to.
    pub email: Option<String>,
    /// Its timezone, stored by its IANA name.
    pub timezone: PracticeZone,
    /// Channels tried for patients without a preference.
    pub channel_order: ChannelOrder,
    /// Whether every message goes in Welsh and English (Welsh first).
    pub bilingual: bool,
}

/// A stored practice.
#[derive(Debug, Clone)]
pub struct Practice {
    /// Row id.
    pub id: PracticeId,
    /// Its ODS code.
    pub ods_code: OdsCode,
    /// Name patients know it by.
    pub name: String,
    /// Public phone number.
    pub phone: Option<String>,
    /// Public website.
    pub website: Option<String>,
    /// Email address replies go to.
    pub email: Option<String>,
    /// Its timezone, read once from the stored name (one that does not parse reads as UK
    /// time: see [`PracticeZone::of_stored`]).
    pub timezone: PracticeZone,
    /// Channels tried for patients without a preference.
    pub channel_order: ChannelOrder,
    /// Whether every message goes in Welsh and English (Welsh first).
    pub bilingual: bool,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// Practices: the tenants of the gateway.
#[async_trait]
pub trait PracticeStore: Send + Sync {
    /// Adds a practice; `Duplicate` if its ODS code is taken.
    async fn create_practice(
        &self,
        practice: &NewPractice,
        now: DateTime<Utc>,
    ) -> StoreResult<Practice>;
    /// Every practice, ordered by ODS code.
    async fn list_practices(&self) -> StoreResult<Vec<Practice>>;
    /// One practice by ODS code.
    async fn practice_by_ods(&self, ods: &OdsCode) -> StoreResult<Option<Practice>>;
    /// One practice by id.
    async fn practice_by_id(&self, id: PracticeId) -> StoreResult<Option<Practice>>;
}
