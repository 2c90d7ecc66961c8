//! `/practices/{ods}/staff`: the staff mobile numbers that may send status commands by text
//! message, each with a name and a role (`post`, or `approve` as well).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::caller::Caller;
use super::extract::{path_id, ApiJson};
use crate::app::AppState;
use crate::domain::{Invalid, PhoneNumber, PracticeId, StaffNumberId};
use crate::http::ApiError;
use crate::store::{AuditEntry, NewStaffNumber, StaffNumber, StaffRole, StoreError};

/// The longest staff name, in characters: it is quoted in SMS replies, so it stays short.
const MAX_NAME_CHARS: usize = 100;

/// A staff number to register.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterStaff {
    name: String,
    phone: String,
    /// Read as text so that a wrong role is a field error like the others.
    role: String,
}

/// A staff number as the API shows it.
#[derive(Debug, Serialize)]
pub struct StaffView {
    id: StaffNumberId,
    name: String,
    phone: String,
    role: StaffRole,
    created_at: DateTime<Utc>,
    created_by: String,
}

impl From<&StaffNumber> for StaffView {
    fn from(s: &StaffNumber) -> Self {
        Self {
            id: s.id,
            name: s.name.clone(),
            phone: s.phone.clone(),
            role: s.role,
            created_at: s.created_at,
            created_by: s.created_by.clone(),
        }
    }
}

impl RegisterStaff {
    /// The number to store, or every field that is wrong.
    fn parse(self, practice_id: PracticeId, actor: &str) -> Result<NewStaffNumber, Vec<Invalid>> {
        let mut errors = Vec::new();
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            errors.push(Invalid::new(
                "name",
                format!("must be 1 to {MAX_NAME_CHARS} characters"),
            ));
        } else if name.chars().any(char::is_control) {
            errors.push(Invalid::new("name", "must be one line of text"));
        }
        let phone = match PhoneNumber::parse(&self.phone) {
            // Commands come from this number and the answers go back to it by SMS.
            Ok(phone) if !phone.can_receive_sms() => {
                errors.push(Invalid::new(
                    "phone",
                    format!("{phone} is not a mobile number: staff text from a mobile"),
                ));
                None
            }
            Ok(phone) => Some(phone),
            Err(e) => {
                errors.push(Invalid::new("phone", e.reason));
                None
            }
        };
        let role = self
            .role
            .parse::<StaffRole>()
            .map_err(|e| errors.push(e))
            .ok();
        match (phone, role) {
            (Some(phone), Some(role)) if errors.is_empty() => Ok(NewStaffNumber {
                practice_id,
                name,
                phone,
                role,
                created_by: actor.to_string(),
            }),
            _ => Err(errors),
        }
    }
}

/// What the audit trail keeps of a staff number: who, which number, what they may do.
fn audit_details(staff: &StaffNumber) -> String {
    json!({ "name": staff.name, "phone": staff.phone, "role": staff.role }).to_string()
}

/// `POST /practices/{ods}/staff`: registers a staff number; 201 with it, 409 if the
/// practice already has this number.
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiJson(body): ApiJson<RegisterStaff>,
) -> Result<(StatusCode, Json<StaffView>), ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let new = body
        .parse(practice.id, &caller.actor)
        .map_err(ApiError::Validation)?;
    let now = Utc::now();
    let staff = state
        .store
        .add_staff_number(&new, now)
        .await
        .map_err(|e| match e {
            StoreError::Duplicate(_) => ApiError::Conflict(
                "staff_number_exists",
                format!(
                    "{} is already registered at {}",
                    new.phone, practice.ods_code
                ),
            ),
            other => other.into(),
        })?;
    state
        .store
        .audit(
            &AuditEntry {
                actor: caller.actor.clone(),
                action: "staff_number.added".into(),
                practice_id: Some(practice.id),
                subject: Some(format!("staff_number:{}", staff.id)),
                details: Some(audit_details(&staff)),
            },
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(StaffView::from(&staff))))
}

/// `GET /practices/{ods}/staff`: the practice's staff numbers, in the order registered.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let staff: Vec<StaffView> = state
        .store
        .staff_numbers(practice.id)
        .await?
        .iter()
        .map(StaffView::from)
        .collect();
    Ok(Json(json!({ "staff": staff })))
}

/// `DELETE /practices/{ods}/staff/{id}`: removes the number; 204, or 404 if the practice
/// has no staff number with that id.
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let not_found = || ApiError::NotFound(format!("no staff number {id} at {}", practice.ods_code));
    let staff_id = path_id(&id, "staff number", StaffNumberId::new).map_err(|_| not_found())?;
    let now = Utc::now();
    let staff = state
        .store
        .remove_staff_number(practice.id, staff_id)
        .await?
        .ok_or_else(not_found)?;
    state
        .store
        .audit(
            &AuditEntry {
                actor: caller.actor.clone(),
                action: "staff_number.removed".into(),
                practice_id: Some(practice.id),
                subject: Some(format!("staff_number:{}", staff.id)),
                details: Some(audit_details(&staff)),
            },
            now,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(name: &str, phone: &str, role: &str) -> RegisterStaff {
        RegisterStaff {
            name: name.into(),
            phone: phone.into(),
            role: role.into(),
        }
    }

    fn fields(errors: Vec<Invalid>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn uk_mobiles_are_stored_in_e164() {
        let new = body(" Dr Jones ", "07700 900123", "approve")
            .parse(PracticeId::new(1), "key:gw_1234567")
            .unwrap();
        assert_eq!(new.name, "Dr Jones");
        assert_eq!(new.phone.as_str(), "+447700900123");
        assert_eq!(new.role, StaffRole::Approve);
        assert_eq!(new.created_by, "key:gw_1234567");
    }

    #[test]
    fn every_wrong_field_is_named() {
        let errors = body("", "not a number", "admin")
            .parse(PracticeId::new(1), "cli")
            .unwrap_err();
        assert_eq!(fields(errors), ["name", "phone", "role"]);
        // A landline cannot text commands or receive the answers.
        let errors = body("Reception", "020 7946 0000", "post")
            .parse(PracticeId::new(1), "cli")
            .unwrap_err();
        assert_eq!(fields(errors), ["phone"]);
        let errors = body("Line\nbreak", "07700 900123", "post")
            .parse(PracticeId::new(1), "cli")
            .unwrap_err();
        assert_eq!(fields(errors), ["name"]);
    }
}
