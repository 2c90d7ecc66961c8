//! Push invitation tokens: `{practice_id}.{patient_id}.{expires}.{mac}`, naming the practice
//! and patient by row id (never the NHS number) and an expiry, signed with HMAC-SHA256 over
//! the prefix `push-invite:`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{PatientId, PracticeId};

/// Bytes of the HMAC kept in a token: 128 bits, for a link that is short enough to text.
const MAC_BYTES: usize = 16;

/// Why an invite token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// Not shaped like a token at all (cut short when copied, or made up).
    #[error("the link is incomplete")]
    Malformed,
    /// Shaped like one, but not signed by this gateway (altered, or signed with another secret).
    #[error("the link has been changed or was not made by this gateway")]
    BadSignature,
    /// Genuine, but past its expiry.
    #[error("the link expired at {0}")]
    Expired(DateTime<Utc>),
}

/// The token of an invitation link: `{practice_id}.{patient_id}.{expires}.{mac}`, with the
/// expiry in unix seconds and the MAC in base64url, so it needs no escaping in a URL.
pub fn invite_token(
    secret: &str,
    practice_id: PracticeId,
    patient_id: PatientId,
    expires_at: DateTime<Utc>,
) -> String {
    let claims = format!("{practice_id}.{patient_id}.{}", expires_at.timestamp());
    let mac =
        URL_SAFE_NO_PAD.encode(&invite_mac(secret, &claims).finalize().into_bytes()[..MAC_BYTES]);
    format!("{claims}.{mac}")
}

/// The `(practice_id, patient_id)` a token names, if it is genuine and not expired at `now`.
/// The signature is checked first, so an altered token never reads as merely expired.
pub fn read_invite_token(
    secret: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(PracticeId, PatientId), InviteError> {
    let (claims, mac) = token
        .trim()
        .rsplit_once('.')
        .ok_or(InviteError::Malformed)?;
    let mac = URL_SAFE_NO_PAD
        .decode(mac)
        .ok()
        .filter(|m| m.len() == MAC_BYTES)
        .ok_or(InviteError::Malformed)?;
    let fields: Vec<&str> = claims.split('.').collect();
    let [practice, patient, expires] = fields[..] else {
        return Err(InviteError::Malformed);
    };
    // Signed over the text as given: "+7" and "07" are other tokens, not the same one.
    invite_mac(secret, claims)
        .verify_truncated_left(&mac)
        .map_err(|_| InviteError::BadSignature)?;
    let number = |s: &str| s.parse::<i64>().map_err(|_| InviteError::Malformed);
    let expires_at = DateTime::from_timestamp(number(expires)?, 0).ok_or(InviteError::Malformed)?;
    if now >= expires_at {
        return Err(InviteError::Expired(expires_at));
    }
    Ok((
        PracticeId::new(number(practice)?),
        PatientId::new(number(patient)?),
    ))
}

/// The expiry a token claims, unchecked: for saying when a link ends once
/// [`read_invite_token`] has accepted it.
pub fn invite_expiry(token: &str) -> Option<DateTime<Utc>> {
    let seconds = token.trim().split('.').nth(2)?.parse().ok()?;
    DateTime::from_timestamp(seconds, 0)
}

fn invite_mac(secret: &str, claims: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"push-invite:");
    mac.update(claims.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    const SECRET: &str = "invite-test-secret";

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 7, 22, hour, 0, 0).unwrap()
    }

    #[test]
    fn token_round_trips_and_is_url_safe() {
        let token = invite_token(SECRET, PracticeId::new(3), PatientId::new(12_345), at(12));
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{token}"
        );
        assert!(token.len() < 48, "{token} is short enough to text");
        assert_eq!(
            read_invite_token(SECRET, &token, at(9)),
            Ok((PracticeId::new(3), PatientId::new(12_345)))
        );
        assert_eq!(invite_expiry(&token), Some(at(12)));
    }

    #[test]
    fn altered_or_foreign_tokens_are_refused() {
        let token = invite_token(SECRET, PracticeId::new(3), PatientId::new(12_345), at(12));
        let other_patient = token.replacen("12345", "12346", 1);
        assert_eq!(
            read_invite_token(SECRET, &other_patient, at(9)),
            Err(InviteError::BadSignature)
        );
        let later = invite_token(SECRET, PracticeId::new(3), PatientId::new(12_345), at(23));
        let (claims, _) = later.rsplit_once('.').unwrap();
        let (_, mac) = token.rsplit_once('.').unwrap();
        assert_eq!(
            read_invite_token(SECRET, &format!("{claims}.{mac}"), at(9)),
            Err(InviteError::BadSignature),
            "a longer expiry cannot be grafted on"
        );
        assert_eq!(
            read_invite_token("another-secret", &token, at(9)),
            Err(InviteError::BadSignature)
        );
        let padded = token.replacen("3.", "+3.", 1);
        assert_eq!(
            read_invite_token(SECRET, &padded, at(9)),
            Err(InviteError::BadSignature)
        );
        for junk in ["", "abc", "1.2.3", "1.2.3.!!", &token[..token.len() - 4]] {
            assert_eq!(
                read_invite_token(SECRET, junk, at(9)),
                Err(InviteError::Malformed),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn token_expires_at_its_time() {
        let token = invite_token(SECRET, PracticeId::new(3), PatientId::new(12_345), at(12));
        assert!(read_invite_token(SECRET, &token, at(12) - Duration::seconds(1)).is_ok());
        assert_eq!(
            read_invite_token(SECRET, &token, at(12)),
            Err(InviteError::Expired(at(12)))
        );
        let forged_and_expired = token.replacen("12345", "1", 1);
        assert_eq!(
            read_invite_token(SECRET, &forged_and_expired, at(13)),
            Err(InviteError::BadSignature),
            "the signature is checked before the expiry"
        );
    }

    #[test]
    fn unsubscribe_tokens_do_not_pass_as_invites() {
        let unsubscribe =
            crate::links::unsubscribe_token(SECRET, crate::domain::ContactId::new(42));
        assert!(read_invite_token(SECRET, &unsubscribe, at(9)).is_err());
    }
}
