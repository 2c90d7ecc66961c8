//! Row ids, one type per table, so a practice id cannot be passed where a broadcast id is
//! expected.
//!
//! Each is the database's `i64` underneath: the same number in JSON (serde transparent) and
//! in both databases (sqlx transparent). There is deliberately no `From<i64>`: a bare number
//! becomes an id only through `new`, at the boundary where it is known what it names (a
//! path parameter, a test).

use std::fmt;

/// Defines a row id type: a `Copy` newtype over `i64`, shown and stored as the number.
macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id with this row number.
            pub const fn new(id: i64) -> Self {
                Self(id)
            }

            /// The row number.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

row_id!(
    /// A practice (tenant).
    PracticeId
);
row_id!(
    /// A patient of a practice.
    PatientId
);
row_id!(
    /// One of a patient's contacts (a phone number, email address or push subscription).
    ContactId
);
row_id!(
    /// An anonymous push follower of a practice.
    FollowerId
);
row_id!(
    /// A status change a practice posted.
    StatusChangeId
);
row_id!(
    /// The broadcast that tells patients of a status change.
    BroadcastId
);
row_id!(
    /// A message in the outbox.
    MessageId
);
row_id!(
    /// An API key.
    ApiKeyId
);
row_id!(
    /// A console user.
    UserId
);
row_id!(
    /// An appointment.
    AppointmentId
);
row_id!(
    /// A change made to an appointment.
    AppointmentChangeId
);
row_id!(
    /// One saved version of a message template.
    TemplateVersionId
);
row_id!(
    /// A run of a contact-list import.
    ImportRunId
);
row_id!(
    /// A staff mobile number registered at a practice.
    StaffNumberId
);
row_id!(
    /// A status change proposed by a staff text or a status source, waiting for approval.
    ProposalId
);
row_id!(
    /// One status change sent to many practices, each with its own broadcast.
    StatusGroupId
);
row_id!(
    /// A status change planned ahead: once, weekly, or on a list of dates.
    ScheduledNoticeId
);
row_id!(
    /// A federation: a named set of practices (a GP federation, a primary care network, an
    /// integrated care board) that a key or console user may be scoped to.
    FederationId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_show_and_serialise_as_the_bare_number() {
        let id = BroadcastId::new(42);
        assert_eq!(id.to_string(), "42");
        assert_eq!(id.get(), 42);
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(serde_json::from_str::<BroadcastId>("42").unwrap(), id);
        assert_eq!(
            serde_json::to_string(&Some(PracticeId::new(7))).unwrap(),
            "7"
        );
    }
}
