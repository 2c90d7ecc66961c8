//! `/practices`: admins add practices; each key sees the practices it may; a practice's own
//! key (or an admin) changes its details: name, phone, website, timezone, channel order,
//! quiet hours and who its messages are from.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::extract::ApiJson;
use super::practice_fields::{present, FieldReader, QuietHoursBody};
use crate::app::AppState;
use crate::domain::{Channel, ChannelOrder, Invalid, OdsCode};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::store::{AuditEntry, NewPractice, Practice, PracticeSenders};

/// A practice to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePractice {
    ods_code: String,
    name: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    website: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    /// Channels a broadcast tries, in order; left out: `[practice_defaults]` (cheapest first).
    #[serde(default)]
    channel_order: Option<Vec<String>>,
    /// Channels a one-patient urgent message tries, in order; left out: fastest first
    /// (push, sms, nhsapp, email).
    #[serde(default)]
    urgent_channel_order: Option<Vec<String>>,
    /// Whether these orders win over a patient's own preferred channel (default: no).
    #[serde(default)]
    order_overrides_preference: bool,
    /// Send every message in Welsh and English, Welsh first.
    #[serde(default)]
    bilingual: bool,
    /// What its texts show as the sender: a sender ID or a phone number.
    #[serde(default)]
    sms_sender: Option<String>,
    /// The display name its emails come from.
    #[serde(default)]
    email_display_name: Option<String>,
    /// Its own quiet hours; left out: the gateway's.
    #[serde(default)]
    quiet_hours: Option<QuietHoursBody>,
}

/// A change to a practice. A field left out stays as it is; for the optional ones `null`
/// or `""` clears it (no phone or website; the provider's sender; the practice's name as
/// the email display name; no Reply-To; the gateway's quiet hours).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePractice {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    website: Option<Option<String>>,
    /// Where replies to its email go.
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    channel_order: Option<Vec<String>>,
    #[serde(default)]
    urgent_channel_order: Option<Vec<String>>,
    #[serde(default)]
    order_overrides_preference: Option<bool>,
    #[serde(default)]
    bilingual: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    sms_sender: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    email_display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    quiet_hours: Option<Option<QuietHoursBody>>,
}

/// A practice as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PracticeView {
    ods_code: String,
    name: String,
    phone: Option<String>,
    website: Option<String>,
    email: Option<String>,
    timezone: String,
    /// Channels a broadcast tries, in order.
    channel_order: Vec<Channel>,
    /// Channels a one-patient urgent message tries, in order.
    urgent_channel_order: Vec<Channel>,
    /// Whether the orders win over a patient's own preferred channel.
    order_overrides_preference: bool,
    bilingual: bool,
    /// `null`: each SMS provider's configured sender.
    sms_sender: Option<String>,
    /// `null`: the practice's name.
    email_display_name: Option<String>,
    /// `null`: the gateway's quiet hours.
    quiet_hours: Option<QuietHoursBody>,
    created_at: DateTime<Utc>,
}

impl From<&Practice> for PracticeView {
    fn from(p: &Practice) -> Self {
        Self {
            ods_code: p.ods_code.to_string(),
            name: p.name.clone(),
            phone: p.phone.clone(),
            website: p.website.clone(),
            email: p.email.clone(),
            timezone: p.timezone.to_string(),
            channel_order: p.channel_order.channels().to_vec(),
            urgent_channel_order: p.urgent_channel_order.channels().to_vec(),
            order_overrides_preference: p.order_overrides_preference,
            bilingual: p.bilingual,
            sms_sender: p.senders.sms_sender.as_ref().map(|s| s.to_string()),
            email_display_name: p.senders.email_display_name.clone(),
            quiet_hours: p.quiet_hours.map(QuietHoursBody::from),
            created_at: p.created_at,
        }
    }
}

impl CreatePractice {
    fn parse(self, state: &AppState) -> Result<NewPractice, Vec<Invalid>> {
        let mut read = FieldReader::default();
        let ods_code = OdsCode::parse(&self.ods_code)
            .map_err(|e| read.errors.push(e))
            .ok();
        let name = read.name(&self.name);
        let phone = read.phone(self.phone.as_deref());
        let website = read.website(self.website.as_deref());
        let email = read.email(self.email.as_deref());
        let senders = PracticeSenders {
            sms_sender: read.sms_sender(self.sms_sender.as_deref()),
            email_display_name: read.display_name(self.email_display_name.as_deref()),
        };
        let timezone = read.timezone(
            self.timezone
                .as_deref()
                .unwrap_or(&state.config.practice_defaults.timezone),
        );
        let channel_order = match &self.channel_order {
            None => Some(state.config.default_channel_order()),
            Some(names) => read.channel_order("channel_order", names),
        };
        let urgent_channel_order = match &self.urgent_channel_order {
            None => Some(ChannelOrder::fastest_first()),
            Some(names) => read.channel_order("urgent_channel_order", names),
        };
        let quiet_hours = self.quiet_hours.as_ref().map(|q| read.quiet_hours(q));
        let new = match (ods_code, timezone, channel_order, urgent_channel_order) {
            (Some(ods_code), Some(timezone), Some(channel_order), Some(urgent_channel_order)) => {
                Some(NewPractice {
                    ods_code,
                    name,
                    phone,
                    website,
                    email,
                    timezone,
                    channel_order,
                    urgent_channel_order,
                    order_overrides_preference: self.order_overrides_preference,
                    bilingual: self.bilingual,
                    senders,
                    quiet_hours: quiet_hours.flatten(),
                })
            }
            _ => None,
        };
        read.finish(new)
    }
}

impl ChangePractice {
    /// The practice with this change applied.
    fn apply(self, practice: &Practice) -> Result<Practice, Vec<Invalid>> {
        let mut read = FieldReader::default();
        let mut changed = practice.clone();
        if let Some(name) = &self.name {
            changed.name = read.name(name);
        }
        if let Some(phone) = &self.phone {
            changed.phone = read.phone(phone.as_deref());
        }
        if let Some(website) = &self.website {
            changed.website = read.website(website.as_deref());
        }
        if let Some(email) = &self.email {
            changed.email = read.email(email.as_deref());
        }
        if let Some(zone) = self.timezone.as_deref().and_then(|z| read.timezone(z)) {
            changed.timezone = zone;
        }
        if let Some(order) = self
            .channel_order
            .as_deref()
            .and_then(|o| read.channel_order("channel_order", o))
        {
            changed.channel_order = order;
        }
        if let Some(order) = self
            .urgent_channel_order
            .as_deref()
            .and_then(|o| read.channel_order("urgent_channel_order", o))
        {
            changed.urgent_channel_order = order;
        }
        if let Some(overrides) = self.order_overrides_preference {
            changed.order_overrides_preference = overrides;
        }
        if let Some(bilingual) = self.bilingual {
            changed.bilingual = bilingual;
        }
        if let Some(sender) = &self.sms_sender {
            changed.senders.sms_sender = read.sms_sender(sender.as_deref());
        }
        if let Some(name) = &self.email_display_name {
            changed.senders.email_display_name = read.display_name(name.as_deref());
        }
        if let Some(quiet) = &self.quiet_hours {
            changed.quiet_hours = quiet.as_ref().and_then(|q| read.quiet_hours(q));
        }
        read.finish(Some(changed))
    }
}

/// `POST /practices` (admin): adds a practice.
#[utoipa::path(post, path = "/practices", operation_id = "create_practice", tag = "practices",
    request_body(content = CreatePractice, example = json!({
        "ods_code": "A81001", "name": "Riverside Surgery", "phone": "020 7946 0000",
        "website": "https://riverside.example.com", "sms_sender": "RIVERSIDE"
    })),
    responses((status = 201, description = "The practice as stored", body = PracticeView)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreatePractice>,
) -> Result<(StatusCode, Json<PracticeView>), ApiError> {
    caller.require_admin()?;
    let new = body.parse(&state).map_err(ApiError::Validation)?;
    let now = Utc::now();
    let practice = state.store.create_practice(&new, now).await?;
    state
        .store
        .audit(
            &AuditEntry {
                actor: caller.actor.clone(),
                action: "practice.created".into(),
                practice_id: Some(practice.id),
                subject: Some(format!("practice:{}", practice.ods_code)),
                details: None,
            },
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(PracticeView::from(&practice))))
}

/// `GET /practices`: every practice the caller may see.
#[utoipa::path(get, path = "/practices", operation_id = "list_practices", tag = "practices",
    responses((status = 200, description = "The practices the key may see", body = shapes::PracticeList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practices: Vec<PracticeView> = state
        .store
        .list_practices()
        .await?
        .iter()
        .filter(|p| caller.can_see(p.id))
        .map(PracticeView::from)
        .collect();
    Ok(Json(serde_json::json!({ "practices": practices })))
}

/// `GET /practices/{ods}`.
#[utoipa::path(get, path = "/practices/{ods}", operation_id = "show_practice", tag = "practices",
    params(shapes::OdsPath),
    responses((status = 200, description = "The practice", body = PracticeView)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    Ok(Json(PracticeView::from(&practice)))
}

/// `PATCH /practices/{ods}` (admin or the practice's own key): changes the practice's
/// details (see [`ChangePractice`]); answers the practice as now stored. The ODS code never
/// changes.
#[utoipa::path(patch, path = "/practices/{ods}", operation_id = "change_practice", tag = "practices",
    params(shapes::OdsPath),
    request_body(content = ChangePractice, example = json!({
        "name": "Riverside Surgery", "sms_sender": "RIVERSIDE", "email": null,
        "quiet_hours": { "start": "21:00", "end": "08:00" }
    })),
    responses((status = 200, description = "The practice as it now is", body = PracticeView)))]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiJson(body): ApiJson<ChangePractice>,
) -> Result<Json<PracticeView>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let wanted = body.apply(&practice).map_err(ApiError::Validation)?;
    let now = Utc::now();
    let changed = state
        .store
        .update_practice(&wanted)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no practice {}", practice.ods_code)))?;
    // Messages this process sends next go with the new details at once.
    state.dispatch.forget_practice(practice.id);
    state
        .store
        .audit(
            &AuditEntry {
                actor: caller.actor.clone(),
                action: "practice.changed".into(),
                practice_id: Some(practice.id),
                subject: Some(format!("practice:{}", practice.ods_code)),
                details: Some(
                    serde_json::json!({
                        "before": PracticeView::from(&practice),
                        "after": PracticeView::from(&changed),
                    })
                    .to_string(),
                ),
            },
            now,
        )
        .await?;
    Ok(Json(PracticeView::from(&changed)))
}
