//! How patients can be reached: opt-outs, bad addresses, push subscriptions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{ContactId, PatientId, PracticeId};

/// A browser's push subscription, as the Push API gives it.
#[derive(Debug, Clone)]
pub struct PushSubscription {
    /// The push service URL (https).
    pub endpoint: String,
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The authentication secret, base64url.
    pub auth: String,
}

/// How patients can be reached: opt-outs, bad addresses, push subscriptions.
#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Marks a contact unreachable (the provider said invalid or unsubscribed): fan-outs skip it.
    async fn mark_bad_recipient(
        &self,
        contact_id: ContactId,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Marks a patient unreachable in the NHS App (NHS Notify said so): fan-outs then give
    /// them no NHS App contact. The first time stands. True if it was not marked before.
    async fn mark_nhs_app_unreachable(
        &self,
        patient_id: PatientId,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Deletes a contact, such as an expired push subscription.
    async fn remove_contact(&self, contact_id: ContactId) -> StoreResult<()>;
    /// Deletes the practice's push subscriptions with this endpoint (a browser turning
    /// notifications off). Returns how many.
    async fn remove_push_endpoint(
        &self,
        practice_id: PracticeId,
        endpoint: &str,
    ) -> StoreResult<u64>;
    /// Opts an SMS number out (or back in) for every patient of the practice who has it.
    /// Returns how many contacts changed.
    async fn set_sms_opt_out(
        &self,
        practice_id: PracticeId,
        address: &str,
        opted_out: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Opts one contact out; false if it does not exist.
    async fn opt_out_contact(&self, contact_id: ContactId, now: DateTime<Utc>)
        -> StoreResult<bool>;
    /// A push contact's keys (`p256dh`, `auth`).
    async fn push_keys(&self, contact_id: ContactId) -> StoreResult<Option<(String, String)>>;
    /// Adds or refreshes a patient's push subscription; `None` if the patient does not exist.
    async fn add_push_subscription(
        &self,
        practice_id: PracticeId,
        nhs_number: &str,
        subscription: &PushSubscription,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ContactId>>;
    /// Opts an SMS number out (or back in) at every practice with a patient who has it, in
    /// one transaction: a reply names no practice, and every practice sends through the same
    /// configured senders, so each of them could have sent what the patient answers. Returns
    /// each practice touched with how many of its contacts have the number, by practice id.
    async fn set_sms_opt_out_everywhere(
        &self,
        address: &str,
        opted_out: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(PracticeId, u64)>>;
}
