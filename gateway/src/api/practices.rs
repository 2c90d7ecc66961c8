//! `/practices`: admins add practices; each key sees the practices it may.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::extract::ApiJson;
use crate::app::AppState;
use crate::domain::{Channel, ChannelOrder, EmailAddress, Invalid, OdsCode, PhoneNumber};
use crate::http::ApiError;
use crate::schedule::PracticeZone;
use crate::store::{AuditEntry, NewPractice, Practice};

/// A practice to add.
#[derive(Debug, Deserialize)]
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
}

/// A practice as the API shows it.
#[derive(Debug, Serialize)]
pub struct PracticeView {
    ods_code: String,
    name: String,
    phone: Option<String>,
    website: Option<String>,
    email: Option<String>,
    timezone: String,
    channel_order: Vec<Channel>,
    bilingual: bool,
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
        let email = match self
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            Some(e) => EmailAddress::parse(e)
                .map(|e| Some(e.to_string()))
                .unwrap_or_else(|e| {
                    errors.push(Invalid::new("email", e.reason));
                    None
                }),
            None => None,
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
                })
            }
            _ => Err(errors),
        }
    }
}

/// `POST /practices` (admin): adds a practice.
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
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
) -> Result<Json<PracticeView>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    Ok(Json(PracticeView::from(&practice)))
}
