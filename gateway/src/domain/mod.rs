//! Plain domain types that are valid by construction: parse, don't validate.
//!
//! Nothing here does I/O. Every type that crosses the API boundary is parsed
//! once, and a value that exists is known to be valid.

mod appointment;
mod channel;
mod email;
mod ids;
mod language;
mod message;
mod nhs_number;
mod ods_code;
mod phone;
mod push_endpoint;
mod rate;
mod sms_sender;
mod status;

pub use appointment::{
    parse_external_ref, parse_start, AppointmentChangeKind, AppointmentMode, AppointmentState,
    MAX_EXTERNAL_REF,
};
pub use channel::{Channel, ChannelChoice, ChannelOrder, CHEAPEST_FIRST, FASTEST_FIRST};
pub use email::EmailAddress;
pub use ids::{
    ApiKeyId, AppointmentChangeId, AppointmentId, BroadcastId, ContactId, FederationId, FollowerId,
    ImportRunId, MessageId, PatientId, PracticeId, ProposalId, ScheduledNoticeId, StaffNumberId,
    StatusChangeId, StatusGroupId, TemplateVersionId, UserId,
};
pub use language::Language;
pub use message::{AttemptOutcome, MessageState, Priority, PushEvent};
pub use nhs_number::NhsNumber;
pub use ods_code::OdsCode;
pub use phone::{PhoneKind, PhoneNumber};
pub use push_endpoint::{EndpointRules, PushEndpoint, DEFAULT_MAX_ENDPOINT_BYTES};
pub use rate::Rate;
pub use sms_sender::{SmsSender, SmsSenderError, MAX_SENDER_ID, MIN_SENDER_ID};
pub use status::{StatusAudience, StatusKind};

/// Why a value was rejected: which field, and a reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, utoipa::ToSchema)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The field that was wrong, as the client named it (e.g. `contacts[0].address`).
    pub field: String,
    /// What was wrong with it.
    pub reason: String,
}

impl Invalid {
    /// A rejection of `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same rejection, with its field placed under `prefix` (e.g. `patients[3]`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}
