//! Receipts: providers' delivery callbacks and patients' replies, checked for authenticity
//! and mapped to message and contact state. Pure functions; `api::receipts` wires them up.

pub mod nhs_notify;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::domain::MessageState;

/// What a provider's status word means for the message: `None` while it is still on its way.
pub type Settles = Option<MessageState>;

/// Twilio's `MessageStatus`: delivered, read (WhatsApp and RCS report it), or
/// failed/undelivered; the rest are on the way.
pub fn twilio_status(status: &str) -> Settles {
    match status {
        "delivered" => Some(MessageState::Delivered),
        "read" => Some(MessageState::Read),
        "failed" | "undelivered" | "canceled" => Some(MessageState::Failed),
        _ => None,
    }
}

/// GOV.UK Notify's callback `status`.
pub fn notify_status(status: &str) -> Settles {
    match status {
        "delivered" => Some(MessageState::Delivered),
        "permanent-failure" | "temporary-failure" | "technical-failure" => {
            Some(MessageState::Failed)
        }
        _ => None,
    }
}

/// The `webhook` kind's callback `status` (our own documented words).
pub fn webhook_status(status: &str) -> Settles {
    match status {
        "delivered" => Some(MessageState::Delivered),
        "failed" => Some(MessageState::Failed),
        _ => None,
    }
}

/// Twilio's request signature: base64 HMAC-SHA1, keyed with the auth token, over the full
/// URL followed by every POST parameter's name and value, sorted by name.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (name, value) in sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// HMAC-SHA256 of `body` as `sha256=<hex>`, the `webhook` kind's signature.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Compares two signatures in constant time.
pub fn same_signature(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a patient's text reply asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END or QUIT: no more texts from this practice.
    OptOut,
    /// START: texts again.
    OptIn,
    /// Anything else: kept out of the gateway's business.
    Other,
}

/// Reads a reply's keyword, in any case, ignoring surrounding spaces and punctuation.
pub fn reply_keyword(body: &str) -> Reply {
    let word = body
        .trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" => Reply::OptOut,
        "START" => Reply::OptIn,
        _ => Reply::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_settle_only_final_words() {
        assert_eq!(twilio_status("delivered"), Some(MessageState::Delivered));
        assert_eq!(twilio_status("read"), Some(MessageState::Read));
        assert_eq!(twilio_status("undelivered"), Some(MessageState::Failed));
        assert_eq!(twilio_status("sent"), None);
        assert_eq!(
            notify_status("temporary-failure"),
            Some(MessageState::Failed)
        );
        assert_eq!(notify_status("sending"), None);
        assert_eq!(webhook_status("delivered"), Some(MessageState::Delivered));
    }

    #[test]
    fn twilio_signature_covers_url_and_sorted_params() {
        let params = vec![
            ("To".to_string(), "+447700900001".to_string()),
            ("Body".to_string(), "STOP".to_string()),
        ];
        let signature = twilio_signature(
            "token",
            "https://gw.example/api/v1/inbound/sms/twilio",
            &params,
        );
        let reordered = vec![params[1].clone(), params[0].clone()];
        assert_eq!(
            signature,
            twilio_signature(
                "token",
                "https://gw.example/api/v1/inbound/sms/twilio",
                &reordered
            )
        );
        assert_ne!(
            signature,
            twilio_signature(
                "other",
                "https://gw.example/api/v1/inbound/sms/twilio",
                &params
            )
        );
        let tampered = vec![
            ("To".to_string(), "+447700900002".to_string()),
            params[1].clone(),
        ];
        assert_ne!(
            signature,
            twilio_signature(
                "token",
                "https://gw.example/api/v1/inbound/sms/twilio",
                &tampered
            )
        );
        assert!(same_signature(&signature, &signature.clone()));
        assert!(!same_signature(&signature, "x"));
    }

    #[test]
    fn keywords_are_read_in_any_case_with_spaces() {
        for stop in [
            "STOP",
            " stop ",
            "Stop.",
            "stopall",
            "UNSUBSCRIBE",
            "cancel",
            "End",
            "quit",
        ] {
            assert_eq!(reply_keyword(stop), Reply::OptOut, "{stop}");
        }
        assert_eq!(reply_keyword(" start "), Reply::OptIn);
        assert_eq!(reply_keyword("please stop texting"), Reply::Other);
        assert_eq!(reply_keyword("thanks"), Reply::Other);
    }
}
