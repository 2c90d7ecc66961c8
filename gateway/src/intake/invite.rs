//! Push invitations: one patient is sent, by SMS or email, a personal link to the page where
//! their browser subscribes (`/p/{ods}/notifications?t=...`).
//!
//! The link is signed (see [`crate::links`]); without the signing secret no invite can be made.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tokio::sync::Notify;

use crate::config::ProviderConfig;
use crate::domain::{Channel, Language, PatientId, PracticeId};
use crate::fanout::urgent_to;
use crate::links::{NoSecret, SignedLinks};
use crate::render::appointment::render_for_patient_off_runtime;
use crate::render::{time_words, RenderError, TemplateRegistry};
use crate::store::{
    AuditEntry, FanoutContact, FanoutPatient, NewMessage, PatientStore, Practice, Store, StoreError,
};

/// How long an invitation link works.
pub const INVITE_VALIDITY: Duration = Duration::days(7);

/// The template key of the invitation message.
pub const INVITE_TEMPLATE: &str = "push.invite";

/// What sending invitations takes: the store, the message templates, the dispatch workers'
/// wake-up, the signed links and the key browsers subscribe with.
#[derive(Clone)]
pub struct Invitations {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Message wording.
    pub templates: Arc<TemplateRegistry>,
    /// Pokes idle dispatch workers when the invitation lands.
    pub wake: Arc<Notify>,
    /// The links invitations carry, or why none can be made.
    pub links: Result<SignedLinks, NoSecret>,
    /// See [`vapid_public_key`]; `None` when web push is not set up.
    pub vapid_public_key: Option<String>,
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
    invitations: &Invitations,
    practice: &Practice,
    nhs_number: &str,
    actor: &str,
) -> Result<InviteSent, SendInviteError> {
    if invitations.vapid_public_key.is_none() {
        return Err(SendInviteError::PushNotConfigured);
    }
    let links = invitations
        .links
        .as_ref()
        .map_err(|no_secret| SendInviteError::NoSecret(no_secret.0.clone()))?;
    let store = invitations.store.as_ref();
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
    let link = links.invite_url(
        practice.ods_code.as_str(),
        practice.id,
        patient.id,
        expires_at,
    );
    let worded = render_for_patient_off_runtime(
        invitations.templates.snapshot(),
        practice,
        &patient.language,
        INVITE_TEMPLATE,
        contact.channel,
        |language| invite_context(practice, &patient, &link, expires_at, language),
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
    invitations.wake.notify_one();
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

/// What the invitation's template sees in `language`: `practice`, `patient` and
/// `invite.{link, expires}`, the expiry in words in that language ("Monday 29 July at 10:30";
/// "dydd Llun 29 Gorffennaf am 10:30", not mutated).
fn invite_context(
    practice: &Practice,
    patient: &FanoutPatient,
    link: &str,
    expires_at: DateTime<Utc>,
    language: Language,
) -> tera::Context {
    let expires = time_words(expires_at, practice.timezone, language).when;
    let mut context = tera::Context::new();
    context.insert("practice", &crate::render::practice_json(practice));
    context.insert(
        "patient",
        &json!({ "given_name": patient.given_name, "family_name": patient.family_name }),
    );
    context.insert("invite", &json!({ "link": link, "expires": expires }));
    context
}

/// The VAPID public key browsers subscribe with: the first `webpush` provider's
/// `vapid_public_key`. `None` if no such provider is configured.
pub fn vapid_public_key(providers: &[ProviderConfig]) -> Option<String> {
    providers
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
    store: &dyn PatientStore,
    practice_id: PracticeId,
    nhs_number: &str,
) -> Result<Option<FanoutPatient>, StoreError> {
    let Some(id) = store.patient_id_of(practice_id, nhs_number).await? else {
        return Ok(None);
    };
    let page = store
        .fanout_page(practice_id, PatientId::new(id.get() - 1), 1)
        .await?;
    Ok(page.into_iter().find(|p| p.id == id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChannelOrder, OdsCode};
    use crate::render::MessageTemplates;
    use chrono::TimeZone;

    fn practice() -> Practice {
        Practice {
            id: PracticeId::new(1),
            ods_code: OdsCode::parse("A81001").unwrap(),
            name: "Riverside Surgery".into(),
            phone: None,
            website: None,
            email: None,
            timezone: crate::schedule::PracticeZone::UK,
            channel_order: ChannelOrder::parse("email,sms").unwrap(),
            urgent_channel_order: ChannelOrder::fastest_first(),
            order_overrides_preference: false,
            bilingual: false,
            senders: Default::default(),
            quiet_hours: None,
            created_at: Utc::now(),
        }
    }

    fn patient() -> FanoutPatient {
        FanoutPatient {
            id: PatientId::new(7),
            nhs_number: "9434765919".into(),
            given_name: Some("Elin".into()),
            family_name: None,
            preferred_channel: None,
            language: "cy".into(),
            in_nhs_app: false,
            contacts: Vec::new(),
        }
    }

    #[test]
    fn the_welsh_invitation_email_gives_its_expiry_in_welsh() {
        let templates = MessageTemplates::builtin().unwrap();
        let (practice, patient) = (practice(), patient());
        let expires_at = Utc.with_ymd_and_hms(2024, 7, 29, 9, 30, 0).unwrap();
        let (email, _) = crate::render::appointment::render_for_patient(
            &templates,
            &practice,
            "cy",
            INVITE_TEMPLATE,
            Channel::Email,
            |language| {
                invite_context(
                    &practice,
                    &patient,
                    "https://x.example/p",
                    expires_at,
                    language,
                )
            },
        )
        .unwrap();
        assert!(
            email.body.contains("cyn dydd Llun 29 Gorffennaf am 10:30."),
            "{}",
            email.body
        );
        assert!(!email.body.contains("July"), "{}", email.body);
        let (english, _) = crate::render::appointment::render_for_patient(
            &templates,
            &practice,
            "en",
            INVITE_TEMPLATE,
            Channel::Email,
            |language| {
                invite_context(
                    &practice,
                    &patient,
                    "https://x.example/p",
                    expires_at,
                    language,
                )
            },
        )
        .unwrap();
        assert!(
            english.body.contains("until Monday 29 July at 10:30."),
            "{}",
            english.body
        );
    }
}
