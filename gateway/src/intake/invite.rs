//! Push invitations: one patient is sent, by SMS or email, a personal link to the page where
//! their browser subscribes (`/p/{ods}/notifications?t=...`).
//!
//! The link's token names the practice and patient by row id (never the NHS number) and an
//! expiry, signed with HMAC-SHA256. The secret is the one that signs email unsubscribe links,
//! from the variable `receipts.unsubscribe_secret_env`; the two kinds of token sign different
//! prefixes, so one can never pass for the other. Without the secret no invite can be made.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::app::AppState;
use crate::domain::Channel;
use crate::fanout::urgent_to;
use crate::render::appointment::render_for_patient_off_runtime;
use crate::render::{uk_date_time, RenderError};
use crate::store::{
    AuditEntry, FanoutContact, FanoutPatient, NewMessage, Practice, Store, StoreError,
};

/// How long an invitation link works.
pub const INVITE_VALIDITY: Duration = Duration::days(7);

/// The template key of the invitation message.
pub const INVITE_TEMPLATE: &str = "push.invite";

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
    practice_id: i64,
    patient_id: i64,
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
) -> Result<(i64, i64), InviteError> {
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
    Ok((number(practice)?, number(patient)?))
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

/// The secret invite tokens are signed with, if the variable naming it is set.
pub fn invite_secret(state: &AppState) -> Result<String, SendInviteError> {
    let variable = &state.config.receipts.unsubscribe_secret_env;
    std::env::var(variable)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SendInviteError::NoSecret(variable.clone()))
}

/// An invitation on its way.
#[derive(Debug, Clone)]
pub struct InviteSent {
    /// The channel it goes by (SMS or email).
    pub channel: Channel,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
    /// False if the same invitation (same patient, same second) was already queued.
    pub queued: bool,
}

/// Why an invitation could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendInviteError {
    /// The variable holding the signing secret is unset.
    #[error("invite links cannot be made: set the environment variable {0} (the secret that signs unsubscribe and invite links)")]
    NoSecret(String),
    /// No `webpush` provider is configured, so there is nothing to sign up for.
    #[error("web push is not set up on this gateway: configure a provider of kind \"webpush\"")]
    PushNotConfigured,
    /// No such patient at the practice.
    #[error("no patient {0} at this practice")]
    UnknownPatient(String),
    /// The patient is no longer registered, or has no SMS or email contact that may be used.
    #[error("patient {0} has no SMS number or email address that can be used (none given, opted out, refused, or no longer registered)")]
    NoContact(String),
    /// The template would not render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sends one patient an invitation to get notifications in their browser: an urgent SMS or
/// email (their preferred channel, else the practice's order) with a link valid for
/// [`INVITE_VALIDITY`]. Recorded in the audit trail as done by `actor`.
pub async fn send_invite(
    state: &AppState,
    practice: &Practice,
    nhs_number: &str,
    actor: &str,
) -> Result<InviteSent, SendInviteError> {
    if vapid_public_key(state).is_none() {
        return Err(SendInviteError::PushNotConfigured);
    }
    let secret = invite_secret(state)?;
    let store = state.store.as_ref();
    if store.patient(practice.id, nhs_number).await?.is_none() {
        return Err(SendInviteError::UnknownPatient(nhs_number.to_string()));
    }
    let no_contact = || SendInviteError::NoContact(nhs_number.to_string());
    let patient = reachable_patient(store, practice.id, nhs_number)
        .await?
        .ok_or_else(no_contact)?;
    let contact = invite_contact(&patient, practice).ok_or_else(no_contact)?;

    let now = Utc::now();
    let expires_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now) + INVITE_VALIDITY;
    let token = invite_token(&secret, practice.id, patient.id, expires_at);
    let link = format!(
        "{}/p/{}/notifications?t={token}",
        state.config.receipts.public_url.trim_end_matches('/'),
        practice.ods_code.as_str()
    );
    let mut context = tera::Context::new();
    context.insert("practice", &crate::render::practice_json(practice));
    context.insert(
        "patient",
        &json!({ "given_name": patient.given_name, "family_name": patient.family_name }),
    );
    context.insert(
        "invite",
        &json!({ "link": link, "expires": uk_date_time(expires_at, &practice.timezone) }),
    );
    let worded = render_for_patient_off_runtime(
        state.templates.snapshot(),
        practice,
        &patient.language,
        INVITE_TEMPLATE,
        contact.channel,
        |_| context.clone(),
    )
    .await?;

    let message = NewMessage {
        idempotency_key: format!("push-invite:p{}:{}", patient.id, expires_at.timestamp()),
        ..urgent_to(
            practice.id,
            patient.id,
            contact,
            INVITE_TEMPLATE,
            worded,
            now,
        )
    };
    let queued = store.insert_messages(&[message]).await? == 1;
    state.wake.notify_one();
    store
        .audit(
            &AuditEntry {
                actor: actor.to_string(),
                action: "push_invite.sent".into(),
                practice_id: Some(practice.id),
                subject: Some(format!("patient:{}", patient.id)),
                details: Some(
                    json!({ "channel": contact.channel, "expires_at": expires_at }).to_string(),
                ),
            },
            now,
        )
        .await?;
    Ok(InviteSent {
        channel: contact.channel,
        expires_at,
        queued,
    })
}

/// The VAPID public key browsers subscribe with: the first `webpush` provider's
/// `vapid_public_key`. `None` if no such provider is configured.
pub fn vapid_public_key(state: &AppState) -> Option<String> {
    state
        .config
        .providers
        .iter()
        .filter(|p| p.kind == "webpush")
        .find_map(|p| {
            p.settings
                .get("vapid_public_key")?
                .as_str()
                .map(str::to_string)
        })
}

/// The contact an invitation goes to: SMS or email only (a patient without a subscription
/// cannot be pushed to), the patient's preferred channel first, then the practice's order.
fn invite_contact<'a>(
    patient: &'a FanoutPatient,
    practice: &Practice,
) -> Option<&'a FanoutContact> {
    let on = |channel: Channel| {
        patient
            .contacts
            .iter()
            .find(|c| c.channel == channel && channel != Channel::Push)
    };
    patient
        .preferred_channel
        .and_then(on)
        .or_else(|| {
            practice
                .channel_order
                .channels()
                .iter()
                .find_map(|c| on(*c))
        })
        .or_else(|| on(Channel::Sms))
        .or_else(|| on(Channel::Email))
}

/// The active patient with this NHS number and their usable contacts (with row ids): the
/// fan-out page that starts just before them.
async fn reachable_patient(
    store: &dyn Store,
    practice_id: i64,
    nhs_number: &str,
) -> Result<Option<FanoutPatient>, StoreError> {
    let Some(id) = store.patient_id_of(practice_id, nhs_number).await? else {
        return Ok(None);
    };
    let page = store.fanout_page(practice_id, id - 1, 1).await?;
    Ok(page.into_iter().find(|p| p.id == id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SECRET: &str = "invite-test-secret";

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 7, 22, hour, 0, 0).unwrap()
    }

    #[test]
    fn token_round_trips_and_is_url_safe() {
        let token = invite_token(SECRET, 3, 12_345, at(12));
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{token}"
        );
        assert!(token.len() < 48, "{token} is short enough to text");
        assert_eq!(read_invite_token(SECRET, &token, at(9)), Ok((3, 12_345)));
        assert_eq!(invite_expiry(&token), Some(at(12)));
    }

    #[test]
    fn altered_or_foreign_tokens_are_refused() {
        let token = invite_token(SECRET, 3, 12_345, at(12));
        let other_patient = token.replacen("12345", "12346", 1);
        assert_eq!(
            read_invite_token(SECRET, &other_patient, at(9)),
            Err(InviteError::BadSignature)
        );
        let later = invite_token(SECRET, 3, 12_345, at(23));
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
        let token = invite_token(SECRET, 3, 12_345, at(12));
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
        let unsubscribe = crate::receipts::unsubscribe_token(SECRET, 42);
        assert!(read_invite_token(SECRET, &unsubscribe, at(9)).is_err());
    }
}
