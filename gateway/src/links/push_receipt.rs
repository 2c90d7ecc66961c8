//! Push receipt tokens: `{message_id}.{mac}`, the message's row id and a truncated
//! HMAC-SHA256 over the prefix `push-receipt:` and that id, carried inside the encrypted
//! push payload. Only the browser that decrypted the message sees it, so a receipt that
//! carries it proves the message reached that browser. Whether it was used already is the
//! database's to say (each event counts once per message), not the token's.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::MessageId;

/// Bytes of the HMAC kept in a token: 128 bits, as in invitation links.
const MAC_BYTES: usize = 16;

/// The longest token read: a 19-digit id, a dot and 22 characters of MAC, with room to spare.
pub const MAX_RECEIPT_TOKEN_BYTES: usize = 64;

/// Why a push receipt token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptTokenError {
    /// Not shaped like a token at all.
    #[error("the receipt token is malformed")]
    Malformed,
    /// Shaped like one, but not signed by this gateway for this message.
    #[error("the receipt token was not issued by this gateway for this message")]
    BadSignature,
}

/// The receipt token of push message `message_id`.
pub fn push_receipt_token(secret: &str, message_id: MessageId) -> String {
    let mac = URL_SAFE_NO_PAD
        .encode(&receipt_mac(secret, message_id).finalize().into_bytes()[..MAC_BYTES]);
    format!("{message_id}.{mac}")
}

/// The message a receipt token names, if this gateway signed it.
pub fn read_push_receipt_token(secret: &str, token: &str) -> Result<MessageId, ReceiptTokenError> {
    if token.len() > MAX_RECEIPT_TOKEN_BYTES {
        return Err(ReceiptTokenError::Malformed);
    }
    let (id, mac) = token.split_once('.').ok_or(ReceiptTokenError::Malformed)?;
    // Digits only: "+7" or "07" would parse to a signed id without being the signed text.
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReceiptTokenError::Malformed);
    }
    let message_id = MessageId::new(id.parse().map_err(|_| ReceiptTokenError::Malformed)?);
    let mac = URL_SAFE_NO_PAD
        .decode(mac)
        .ok()
        .filter(|m| m.len() == MAC_BYTES)
        .ok_or(ReceiptTokenError::Malformed)?;
    receipt_mac(secret, message_id)
        .verify_truncated_left(&mac)
        .map_err(|_| ReceiptTokenError::BadSignature)?;
    if message_id.to_string() != id {
        return Err(ReceiptTokenError::BadSignature);
    }
    Ok(message_id)
}

fn receipt_mac(secret: &str, message_id: MessageId) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("push-receipt:{message_id}").as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "receipt-test-secret";

    #[test]
    fn tokens_name_one_message_and_are_url_safe() {
        let token = push_receipt_token(SECRET, MessageId::new(4242));
        assert!(token.starts_with("4242."), "{token}");
        assert!(token.len() <= MAX_RECEIPT_TOKEN_BYTES);
        assert!(token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
        assert_eq!(
            read_push_receipt_token(SECRET, &token),
            Ok(MessageId::new(4242))
        );
    }

    #[test]
    fn forged_foreign_and_malformed_tokens_are_refused() {
        let token = push_receipt_token(SECRET, MessageId::new(4242));
        let other_message = token.replacen("4242.", "4243.", 1);
        assert_eq!(
            read_push_receipt_token(SECRET, &other_message),
            Err(ReceiptTokenError::BadSignature)
        );
        assert_eq!(
            read_push_receipt_token("another-secret", &token),
            Err(ReceiptTokenError::BadSignature)
        );
        let padded = token.replacen("4242.", "04242.", 1);
        assert_eq!(
            read_push_receipt_token(SECRET, &padded),
            Err(ReceiptTokenError::BadSignature)
        );
        for junk in [
            "",
            "4242",
            ".abc",
            "+4242.abc",
            "4242.!!",
            &token[..token.len() - 3],
            &"9".repeat(200),
        ] {
            assert_eq!(
                read_push_receipt_token(SECRET, junk),
                Err(ReceiptTokenError::Malformed),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn other_signed_tokens_do_not_pass_as_receipts() {
        let unsubscribe =
            crate::links::unsubscribe_token(SECRET, crate::domain::ContactId::new(4242));
        assert!(read_push_receipt_token(SECRET, &unsubscribe).is_err());
        let invite = crate::links::invite_token(
            SECRET,
            crate::domain::PracticeId::new(1),
            crate::domain::PatientId::new(4242),
            chrono::Utc::now(),
        );
        assert!(read_push_receipt_token(SECRET, &invite).is_err());
    }
}
