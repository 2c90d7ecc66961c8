//! Registering and removing staff numbers, with their audit lines: the rules the API and
//! the console share.

use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::domain::{Invalid, PhoneNumber, PracticeId, StaffNumberId};
use crate::store::{
    AccessStore, AuditEntry, NewStaffNumber, Practice, StaffNumber, StaffRole, StaffStore,
    StoreError,
};

/// The longest staff name, in characters: it is quoted in SMS replies, so it stays short.
const MAX_NAME_CHARS: usize = 100;

/// A staff number to register, as a client or the console's form sends it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStaff {
    /// The staff member's name.
    pub name: String,
    /// Their mobile number, in any usual UK or international form.
    pub phone: String,
    /// `post` or `approve`; read as text so that a wrong role is a field error like the others.
    pub role: String,
}

impl RegisterStaff {
    /// The number to store, or every field that is wrong.
    pub fn parse(
        self,
        practice_id: PracticeId,
        actor: &str,
    ) -> Result<NewStaffNumber, Vec<Invalid>> {
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

/// Why a staff number was not registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// A field is wrong.
    #[error("invalid staff number")]
    Invalid(Vec<Invalid>),
    /// The practice already has this number.
    #[error("{0} is already registered at {1}")]
    Exists(String, String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the audit trail keeps of a staff number: who, which number, what they may do.
fn audit_details(staff: &StaffNumber) -> String {
    json!({ "name": staff.name, "phone": staff.phone, "role": staff.role }).to_string()
}

/// Registers `request` at `practice` as `actor`, and audits it.
pub async fn register<S: StaffStore + AccessStore + ?Sized>(
    store: &S,
    practice: &Practice,
    request: RegisterStaff,
    actor: &str,
) -> Result<StaffNumber, RegisterError> {
    let new = request
        .parse(practice.id, actor)
        .map_err(RegisterError::Invalid)?;
    let now = Utc::now();
    let staff = store
        .add_staff_number(&new, now)
        .await
        .map_err(|e| match e {
            StoreError::Duplicate(_) => {
                RegisterError::Exists(new.phone.to_string(), practice.ods_code.to_string())
            }
            other => other.into(),
        })?;
    audit(store, practice, actor, "staff_number.added", &staff).await?;
    Ok(staff)
}

/// Removes the practice's staff number `id` as `actor`, and audits it; `None` if the
/// practice has no such number.
pub async fn remove<S: StaffStore + AccessStore + ?Sized>(
    store: &S,
    practice: &Practice,
    id: StaffNumberId,
    actor: &str,
) -> Result<Option<StaffNumber>, StoreError> {
    let Some(staff) = store.remove_staff_number(practice.id, id).await? else {
        return Ok(None);
    };
    audit(store, practice, actor, "staff_number.removed", &staff).await?;
    Ok(Some(staff))
}

async fn audit<S: AccessStore + ?Sized>(
    store: &S,
    practice: &Practice,
    actor: &str,
    action: &str,
    staff: &StaffNumber,
) -> Result<(), StoreError> {
    store
        .audit(
            &AuditEntry {
                actor: actor.to_string(),
                action: action.into(),
                practice_id: Some(practice.id),
                subject: Some(format!("staff_number:{}", staff.id)),
                details: Some(audit_details(staff)),
            },
            Utc::now(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StaffRole;

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
