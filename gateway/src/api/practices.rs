//! `/practices`: admins add practices; each key sees the practices it may; a practice's own
//! key (or an admin) changes who its messages are from.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::extract::ApiJson;
use crate::app::AppState;
use crate::domain::{
    Channel, ChannelOrder, EmailAddress, Invalid, OdsCode, PhoneNumber, SmsSender,
};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::schedule::PracticeZone;
use crate::store::{AuditEntry, NewPractice, Practice, PracticeSenders};

/// The longest email display name taken.
const MAX_DISPLAY_NAME: usize = 100;

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
    #[serde(default)]
    channel_order: Option<Vec<String>>,
    /// Send every message in Welsh and English, Welsh first.
    #[serde(default)]
    bilingual: bool,
    /// What its texts show as the sender: a sender ID or a phone number.
    #[serde(default)]
    sms_sender: Option<String>,
    /// The display name its emails come from.
    #[serde(default)]
    email_display_name: Option<String>,
}

/// A change to who a practice's messages are from. A field left out stays as it is; `null`
/// or `""` clears it (back to the provider's sender, the practice's name, no Reply-To).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeSenders {
    #[serde(default, deserialize_with = "present")]
    sms_sender: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    email_display_name: Option<Option<String>>,
    /// Where replies to its email go.
    #[serde(default, deserialize_with = "present")]
    email: Option<Option<String>>,
}

/// A field that was given, `null` included (left out: `None` by `default`).
fn present<'de, D>(deserializer: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(deserializer).map(Some)
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
    channel_order: Vec<Channel>,
    bilingual: bool,
    /// `null`: each SMS provider's configured sender.
    sms_sender: Option<String>,
    /// `null`: the practice's name.
    email_display_name: Option<String>,
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
            bilingual: p.bilingual,
            sms_sender: p.senders.sms_sender.as_ref().map(|s| s.to_string()),
            email_display_name: p.senders.email_display_name.clone(),
            created_at: p.created_at,
        }
    }
}

impl CreatePractice {
    fn parse(self, state: &AppState) -> Result<NewPractice, Vec<Invalid>> {
        let mut errors = Vec::new();
        let ods_code = OdsCode::parse(&self.ods_code)
            .map_err(|e| errors.push(e))
            .ok();
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            errors.push(Invalid::new("name", "must be 1 to 200 characters"));
        }
        let phone = match self
            .phone
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            Some(p) => match PhoneNumber::parse(p) {
                Ok(_) => Some(p.to_string()),
                Err(e) => {
                    errors.push(Invalid::new("phone", e.reason));
                    None
                }
            },
            None => None,
        };
        let website = self
            .website
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty());
        if website
            .as_ref()
            .is_some_and(|w| w.len() > 200 || w.contains(char::is_whitespace))
        {
            errors.push(Invalid::new(
                "website",
                "must be a web address of at most 200 characters",
            ));
        }
        let email = parse_email(self.email.as_deref(), &mut errors);
        let senders = PracticeSenders {
            sms_sender: parse_sms_sender(self.sms_sender.as_deref(), &mut errors),
            email_display_name: parse_display_name(self.email_display_name.as_deref(), &mut errors),
        };
        let timezone = self
            .timezone
            .unwrap_or_else(|| state.config.practice_defaults.timezone.clone());
        let timezone = PracticeZone::parse(&timezone)
            .map_err(|e| errors.push(Invalid::new("timezone", e.to_string())))
            .ok();
        let channel_order = match self.channel_order {
            None => Some(state.config.default_channel_order()),
            Some(names) => names
                .iter()
                .map(|n| n.parse::<Channel>())
                .collect::<Result<Vec<_>, _>>()
                .and_then(ChannelOrder::new)
                .map_err(|e| errors.push(Invalid::new("channel_order", e.reason)))
                .ok(),
        };
        match (ods_code, timezone, channel_order) {
            (Some(ods_code), Some(timezone), Some(channel_order)) if errors.is_empty() => {
                Ok(NewPractice {
                    ods_code,
                    name,
                    phone,
                    website,
                    email,
                    timezone,
                    channel_order,
                    bilingual: self.bilingual,
                    senders,
                })
            }
            _ => Err(errors),
        }
    }
}

/// Where replies go: an email address, or none if blank.
fn parse_email(text: Option<&str>, errors: &mut Vec<Invalid>) -> Option<String> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    EmailAddress::parse(text)
        .map(|e| e.to_string())
        .map_err(|e| errors.push(Invalid::new("email", e.reason)))
        .ok()
}

/// The practice's SMS sender, or none if blank.
fn parse_sms_sender(text: Option<&str>, errors: &mut Vec<Invalid>) -> Option<SmsSender> {
    let text = text.filter(|t| !t.trim().is_empty())?;
    SmsSender::parse(text)
        .map_err(|e| errors.push(Invalid::new("sms_sender", e.to_string())))
        .ok()
}

/// An email display name: one line of at most [`MAX_DISPLAY_NAME`] characters, or none if
/// blank.
fn parse_display_name(text: Option<&str>, errors: &mut Vec<Invalid>) -> Option<String> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    if text.chars().count() > MAX_DISPLAY_NAME || text.chars().any(char::is_control) {
        errors.push(Invalid::new(
            "email_display_name",
            format!("must be one line of at most {MAX_DISPLAY_NAME} characters"),
        ));
        return None;
    }
    Some(text.to_string())
}

impl ChangeSenders {
    /// The practice's senders and `email` with this change applied.
    fn apply(self, practice: &Practice) -> Result<(PracticeSenders, Option<String>), Vec<Invalid>> {
        let mut errors = Vec::new();
        let mut senders = practice.senders.clone();
        let mut email = practice.email.clone();
        if let Some(text) = self.sms_sender {
            senders.sms_sender = parse_sms_sender(text.as_deref(), &mut errors);
        }
        if let Some(text) = self.email_display_name {
            senders.email_display_name = parse_display_name(text.as_deref(), &mut errors);
        }
        if let Some(text) = self.email {
            email = parse_email(text.as_deref(), &mut errors);
        }
        if errors.is_empty() {
            Ok((senders, email))
        } else {
            Err(errors)
        }
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

/// `PATCH /practices/{ods}` (admin or the practice's own key): changes who the practice's
/// messages are from: `sms_sender`, `email_display_name` and `email` (where replies go).
#[utoipa::path(patch, path = "/practices/{ods}", operation_id = "change_practice_senders", tag = "practices",
    params(shapes::OdsPath),
    request_body(content = ChangeSenders, example = json!({ "sms_sender": "OAK SURGERY", "email": null })),
    responses((status = 200, description = "The practice as it now is", body = PracticeView)))]
pub async fn change_senders(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiJson(body): ApiJson<ChangeSenders>,
) -> Result<Json<PracticeView>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let (senders, email) = body.apply(&practice).map_err(ApiError::Validation)?;
    let now = Utc::now();
    let changed = state
        .store
        .set_practice_senders(practice.id, &senders, email.as_deref())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no practice {}", practice.ods_code)))?;
    // Messages this process sends next go from the new senders at once.
    state.dispatch.forget_practice(practice.id);
    state
        .store
        .audit(
            &AuditEntry {
                actor: caller.actor.clone(),
                action: "practice.senders_changed".into(),
                practice_id: Some(practice.id),
                subject: Some(format!("practice:{}", practice.ods_code)),
                details: Some(
                    serde_json::json!({
                        "sms_sender": senders.sms_sender.as_ref().map(|s| s.to_string()),
                        "email_display_name": senders.email_display_name,
                        "email": email,
                    })
                    .to_string(),
                ),
            },
            now,
        )
        .await?;
    Ok(Json(PracticeView::from(&changed)))
}
