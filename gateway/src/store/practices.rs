//! Practices: the tenants of the gateway.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{ChannelChoice, ChannelOrder, OdsCode, PracticeId, SmsSender};
use crate::schedule::{PracticeZone, QuietHours};

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
    /// Channels a broadcast tries, in order (cheapest first unless the practice chose).
    pub channel_order: ChannelOrder,
    /// Channels a one-patient urgent message tries, in order (fastest first by default).
    pub urgent_channel_order: ChannelOrder,
    /// Whether the practice's orders win over a patient's own preferred channel.
    pub order_overrides_preference: bool,
    /// Whether every message goes in Welsh and English (Welsh first).
    pub bilingual: bool,
    /// Who its messages are from.
    pub senders: PracticeSenders,
    /// Its own quiet hours; `None`: the gateway's `[quiet_hours]`.
    pub quiet_hours: Option<QuietHours>,
}

/// Who a practice's messages are from, as patients see it. Replies to its email go to the
/// practice's `email`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PracticeSenders {
    /// What its texts show as the sender; `None`: each SMS provider's configured sender.
    pub sms_sender: Option<SmsSender>,
    /// The display name its emails come from (the address stays the provider's); `None`:
    /// the practice's name.
    pub email_display_name: Option<String>,
}

impl Practice {
    /// How a broadcast picks each patient's channel.
    pub fn broadcast_choice(&self) -> ChannelChoice<'_> {
        ChannelChoice {
            order: &self.channel_order,
            overrides_preference: self.order_overrides_preference,
        }
    }

    /// How a one-patient urgent message (an appointment change) picks the channel.
    pub fn urgent_choice(&self) -> ChannelChoice<'_> {
        ChannelChoice {
            order: &self.urgent_channel_order,
            overrides_preference: self.order_overrides_preference,
        }
    }

    /// The quiet hours its bulk SMS and push keep: its own, else the gateway's.
    pub fn quiet_hours_or(&self, gateway: Option<QuietHours>) -> Option<QuietHours> {
        self.quiet_hours.or(gateway)
    }
}

impl PracticeSenders {
    /// The stored columns read back. A sender that no longer passes the rules (they may
    /// have grown stricter since it was stored) is dropped with a warning, so the practice
    /// still sends, from the provider's sender, rather than failing to load.
    pub fn of_stored(sms_sender: Option<String>, email_display_name: Option<String>) -> Self {
        let sms_sender = sms_sender.and_then(|text| match SmsSender::parse(&text) {
            Ok(sender) => Some(sender),
            Err(e) => {
                tracing::warn!(sender = %text, "stored SMS sender refused ({e}); using the provider's");
                None
            }
        });
        Self {
            sms_sender,
            email_display_name,
        }
    }
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
    /// Channels a broadcast tries, in order (cheapest first unless the practice chose).
    pub channel_order: ChannelOrder,
    /// Channels a one-patient urgent message tries, in order (fastest first by default).
    pub urgent_channel_order: ChannelOrder,
    /// Whether the practice's orders win over a patient's own preferred channel.
    pub order_overrides_preference: bool,
    /// Whether every message goes in Welsh and English (Welsh first).
    pub bilingual: bool,
    /// Who its messages are from.
    pub senders: PracticeSenders,
    /// Its own quiet hours, when bulk SMS and push wait; `None`: the gateway's.
    pub quiet_hours: Option<QuietHours>,
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
    /// Writes every detail of a practice that may change (all but its id, ODS code and
    /// creation time) as `practice` has them; the practice as now stored (`None` if there
    /// is no such practice).
    async fn update_practice(&self, practice: &Practice) -> StoreResult<Option<Practice>>;
}
