//! Staff mobile numbers: who at a practice may send status commands by text message.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{Invalid, PhoneNumber, PracticeId, StaffNumberId};

/// What a registered staff member may do by text message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// May post a status change (confirmed with the code sent back).
    Post,
    /// May post, and may also approve a status change someone or something else proposed.
    Approve,
}

impl StaffRole {
    /// Every role, in the order they widen.
    pub const ALL: [StaffRole; 2] = [StaffRole::Post, StaffRole::Approve];

    /// The stored and JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Post => "post",
            StaffRole::Approve => "approve",
        }
    }

    /// Whether this role may approve proposed status changes.
    pub fn may_approve(self) -> bool {
        self == StaffRole::Approve
    }
}

impl FromStr for StaffRole {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StaffRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                Invalid::new("role", format!("{s:?} is not a role: use post or approve"))
            })
    }
}

impl fmt::Display for StaffRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A staff number to register.
#[derive(Debug, Clone)]
pub struct NewStaffNumber {
    /// The practice it is registered at.
    pub practice_id: PracticeId,
    /// The staff member's name, as the audit trail and the replies name them.
    pub name: String,
    /// The mobile number, parsed (so stored in E.164).
    pub phone: PhoneNumber,
    /// What they may do.
    pub role: StaffRole,
    /// The audit trail's actor who registered it (`key:<prefix>`, `user:<name>`).
    pub created_by: String,
}

/// A registered staff number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffNumber {
    /// How the API (`DELETE .../staff/{id}`) and the audit trail (`staff_number:{id}`) name it.
    pub id: StaffNumberId,
    /// The practice it is registered at.
    pub practice_id: PracticeId,
    /// The staff member's name.
    pub name: String,
    /// The number in E.164, as it was parsed when registered. Kept as text: a number that a
    /// later numbering plan no longer knows must still be listed (and removable).
    pub phone: String,
    /// What they may do.
    pub role: StaffRole,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// The audit trail's actor who registered it.
    pub created_by: String,
}

/// Where staff numbers are kept.
#[async_trait]
pub trait StaffStore: Send + Sync {
    /// Registers a number; `StoreError::Duplicate` if the practice already has it.
    async fn add_staff_number(
        &self,
        new: &NewStaffNumber,
        now: DateTime<Utc>,
    ) -> StoreResult<StaffNumber>;
    /// The practice's staff numbers, in the order they were registered.
    async fn staff_numbers(&self, practice_id: PracticeId) -> StoreResult<Vec<StaffNumber>>;
    /// Removes the practice's staff number `id`; what was removed, or `None` if the practice
    /// has no such number (another practice's id removes nothing).
    async fn remove_staff_number(
        &self,
        practice_id: PracticeId,
        id: StaffNumberId,
    ) -> StoreResult<Option<StaffNumber>>;
    /// Every registration of this number, at any practice (an inbound text names only the
    /// sender, who may be registered at several), in row order.
    async fn staff_numbers_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Vec<StaffNumber>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_back_what_they_write() {
        for role in StaffRole::ALL {
            assert_eq!(role.as_str().parse::<StaffRole>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).ok(),
                Some(serde_json::Value::from(role.as_str()))
            );
        }
        assert!(StaffRole::Approve.may_approve());
        assert!(!StaffRole::Post.may_approve());
        let refused = "admin".parse::<StaffRole>().unwrap_err();
        assert_eq!(refused.field, "role");
    }
}
