//! Signed links: the one-click unsubscribe link in bulk email, the push invitation link
//! sent by SMS or email, and the receipt token inside each push message, all signed with
//! one secret, from the variable named by `receipts.unsubscribe_secret_env`.
//!
//! Each kind signs its own prefix (`unsubscribe:`, `push-invite:`, `push-receipt:`), so a
//! token of one kind never passes for another. The secret is read from the environment each time a
//! [`SignedLinks`] is made, as the gateway always has.

mod invite;
mod push_receipt;
mod unsubscribe;

use chrono::{DateTime, Utc};

pub use invite::{invite_expiry, invite_token, read_invite_token, InviteError};
pub use push_receipt::{
    push_receipt_token, read_push_receipt_token, ReceiptTokenError, MAX_RECEIPT_TOKEN_BYTES,
};
pub use unsubscribe::{read_unsubscribe_token, unsubscribe_token};

use crate::config::ReceiptsConfig;
use crate::domain::{ContactId, MessageId, PatientId, PracticeId};

/// Where service workers post push receipts, on the gateway that served them.
pub const PUSH_RECEIPTS_PATH: &str = "/api/v1/push/receipts";

/// The variable naming the link secret is unset or empty: no signed link can be made or
/// checked. Holds the variable's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the environment variable {0} (the secret that signs unsubscribe and invite links) is not set"
)]
pub struct NoSecret(pub String);

/// Where signed links point and the secret that signs them.
#[derive(Clone)]
pub struct SignedLinks {
    /// The gateway's public base URL, without a trailing slash.
    public_url: String,
    secret: String,
}

impl SignedLinks {
    /// The links `[receipts]` describes, with the secret read from the environment now.
    pub fn from_config(receipts: &ReceiptsConfig) -> Result<Self, NoSecret> {
        let variable = &receipts.unsubscribe_secret_env;
        let secret = std::env::var(variable)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| NoSecret(variable.clone()))?;
        Ok(Self::new(&receipts.public_url, secret))
    }

    /// Links under `public_url` signed with `secret`.
    pub fn new(public_url: &str, secret: String) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_string(),
            secret,
        }
    }

    /// The one-click unsubscribe link of one contact (an email address).
    pub fn unsubscribe_url(&self, contact_id: ContactId) -> String {
        format!(
            "{}/unsubscribe/{}",
            self.public_url,
            unsubscribe_token(&self.secret, contact_id)
        )
    }

    /// The contact an unsubscribe token names, if this gateway signed it.
    pub fn unsubscribe_contact(&self, token: &str) -> Option<ContactId> {
        read_unsubscribe_token(&self.secret, token)
    }

    /// The link to the practice's push sign-up page that links the browser to one patient,
    /// valid until `expires_at`.
    pub fn invite_url(
        &self,
        ods_code: &str,
        practice_id: PracticeId,
        patient_id: PatientId,
        expires_at: DateTime<Utc>,
    ) -> String {
        let token = invite_token(&self.secret, practice_id, patient_id, expires_at);
        format!("{}/p/{ods_code}/notifications?t={token}", self.public_url)
    }

    /// The `(practice_id, patient_id)` an invitation token names, if it is genuine and not
    /// expired at `now`.
    pub fn invited(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(PracticeId, PatientId), InviteError> {
        read_invite_token(&self.secret, token, now)
    }

    /// The receipt token carried inside push message `message_id`.
    pub fn push_receipt_token(&self, message_id: MessageId) -> String {
        push_receipt_token(&self.secret, message_id)
    }

    /// The push message a receipt token names, if this gateway signed it.
    pub fn push_receipt_message(&self, token: &str) -> Result<MessageId, ReceiptTokenError> {
        read_push_receipt_token(&self.secret, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn links_point_at_the_public_url_and_read_back() {
        let links = SignedLinks::new("https://gw.example/", "secret".into());
        let url = links.unsubscribe_url(ContactId::new(42));
        let token = url.strip_prefix("https://gw.example/unsubscribe/").unwrap();
        assert_eq!(links.unsubscribe_contact(token), Some(ContactId::new(42)));
        let expires = Utc.with_ymd_and_hms(2024, 7, 22, 12, 0, 0).unwrap();
        let url = links.invite_url("A81001", PracticeId::new(3), PatientId::new(7), expires);
        let token = url
            .strip_prefix("https://gw.example/p/A81001/notifications?t=")
            .unwrap();
        assert_eq!(
            links.invited(token, expires - chrono::Duration::hours(1)),
            Ok((PracticeId::new(3), PatientId::new(7)))
        );
        assert!(links.unsubscribe_contact(token).is_none());
    }
}
