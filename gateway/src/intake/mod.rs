//! Intake: what comes into the gateway (status changes, patient lists) parsed into
//! domain types and recorded, ready for fan-out.

/// Invitations to get notifications in the browser: signed links sent by SMS or email.
pub mod invite;
pub mod patients;
pub mod status;
