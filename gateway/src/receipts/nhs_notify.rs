//! NHS Notify's callbacks: message status and channel status, signed with HMAC-SHA256 of
//! the body keyed with `{application id}.{api key}`, mapped to our message states.
//!
//! Only the NHS App channel's statuses settle a message: the gateway sends each message
//! on one channel and does its own fallback, so a routing plan's other channels (if any)
//! are NHS Notify's business. A failure saying the patient cannot be reached in the app at
//! all (no NHS App account, NHS number not found) is told apart, so the patient is marked
//! and the message moves to their next channel.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::Settles;
use crate::domain::MessageState;

/// The most callback items one request may carry.
pub const MAX_ITEMS: usize = 1_000;

/// The largest callback body read (they are a few hundred bytes an item).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// NHS Notify's reason codes (message `MFR_...` or channel `CFR_...`) meaning the NHS App
/// cannot reach this patient at all: contact detail missing (no NHS App account or no
/// notifications), NHS number not found, patient not in PDS. Other failures (a deceased
/// patient, an invalidated record) end the message without moving to another channel.
const NOT_IN_APP: &[&str] = &["PDSV_0002", "PDSV_0004", "PDSV_0006"];

/// The signature NHS Notify sends in `x-hmac-sha256-signature`: hex HMAC-SHA256 of the
/// body keyed with `{application_id}.{api_key}`.
pub fn signature(application_id: &str, api_key: &str, body: &[u8]) -> String {
    let key = format!("{application_id}.{api_key}");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A callback body: `{"data": [ ... ]}`.
#[derive(Debug, Deserialize)]
pub struct Callback {
    /// The status changes, one per item.
    pub data: Vec<Item>,
}

/// One status change.
#[derive(Debug, Deserialize)]
pub struct Item {
    /// `MessageStatus` or `ChannelStatus`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its details.
    pub attributes: Attributes,
}

/// The attributes of a status change (both kinds; each has only some).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    /// NHS Notify's id of the message: our provider reference.
    pub message_id: String,
    /// Our reference (the message's id).
    #[serde(default)]
    pub message_reference: Option<String>,
    /// A `MessageStatus`: the message's overall status.
    #[serde(default)]
    pub message_status: Option<String>,
    /// A `MessageStatus` failure's reason code.
    #[serde(default)]
    pub message_failure_reason_code: Option<String>,
    /// A `ChannelStatus`: which channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// A `ChannelStatus`: that channel's status.
    #[serde(default)]
    pub channel_status: Option<String>,
    /// A `ChannelStatus` failure's reason code.
    #[serde(default)]
    pub channel_failure_reason_code: Option<String>,
}

/// What one status change means for our message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meaning {
    /// The status word recorded with the receipt (`delivered`, `nhsapp:failed`).
    pub status: String,
    /// The state it moves the message to, if any.
    pub settles: Settles,
    /// The failure's reason code, if one was given.
    pub reason_code: Option<String>,
    /// Whether it says the patient cannot be reached in the NHS App at all.
    pub not_in_app: bool,
}

impl Item {
    /// What the status change means; `None` for another channel's status.
    pub fn meaning(&self) -> Option<Meaning> {
        let a = &self.attributes;
        let (status, code) = match self.kind.as_str() {
            "ChannelStatus" => {
                if a.channel.as_deref() != Some("nhsapp") {
                    return None;
                }
                (
                    a.channel_status.clone()?,
                    a.channel_failure_reason_code.clone(),
                )
            }
            "MessageStatus" => (
                a.message_status.clone()?,
                a.message_failure_reason_code.clone(),
            ),
            _ => return None,
        };
        let settles = match status.as_str() {
            "delivered" => Some(MessageState::Delivered),
            "failed" => Some(MessageState::Failed),
            _ => None,
        };
        let not_in_app = settles == Some(MessageState::Failed)
            && code
                .as_deref()
                .is_some_and(|c| NOT_IN_APP.iter().any(|n| c.ends_with(n)));
        Some(Meaning {
            status,
            settles,
            reason_code: code,
            not_in_app,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: &str) -> Item {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn nhs_app_statuses_settle_and_not_in_app_is_told_apart() {
        let delivered = item(
            r#"{"type":"ChannelStatus","attributes":{"messageId":"K1","channel":"nhsapp","channelStatus":"delivered"}}"#,
        );
        let meaning = delivered.meaning().unwrap();
        assert_eq!(meaning.settles, Some(MessageState::Delivered));
        assert!(!meaning.not_in_app);
        let missing = item(
            r#"{"type":"ChannelStatus","attributes":{"messageId":"K1","channel":"nhsapp","channelStatus":"failed","channelFailureReasonCode":"CFR_PDSV_0002"}}"#,
        );
        assert!(missing.meaning().unwrap().not_in_app);
        let dead = item(
            r#"{"type":"MessageStatus","attributes":{"messageId":"K1","messageStatus":"failed","messageFailureReasonCode":"MFR_PDSV_0112"}}"#,
        );
        let meaning = dead.meaning().unwrap();
        assert_eq!(meaning.settles, Some(MessageState::Failed));
        assert!(!meaning.not_in_app);
        let sms = item(
            r#"{"type":"ChannelStatus","attributes":{"messageId":"K1","channel":"sms","channelStatus":"delivered"}}"#,
        );
        assert!(sms.meaning().is_none());
        let sending = item(
            r#"{"type":"MessageStatus","attributes":{"messageId":"K1","messageStatus":"sending"}}"#,
        );
        assert_eq!(sending.meaning().unwrap().settles, None);
    }

    #[test]
    fn the_signature_is_keyed_with_application_id_and_api_key() {
        let one = signature("app", "key", b"{}");
        assert_eq!(one.len(), 64);
        assert_ne!(one, signature("app", "other", b"{}"));
        assert_ne!(one, signature("app", "key", b"{ }"));
    }
}
